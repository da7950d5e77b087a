"""Calling a causal LM the way the locator does: inputs on the right device, only the logits needed.

:func:`input_device` is where token ids and input embeddings go: the input embedding's execution
device (the first parameter's device is wrong when weights are offloaded or spread by a device map).
:func:`forward` passes ``use_cache=False`` and, when only the last position's logits are needed,
``logits_to_keep=1``, each only where the model's ``forward`` names that argument: a model with its
own code (``trust_remote_code``) may not accept it and would raise ``TypeError``."""

from __future__ import annotations

import inspect

import torch


def input_device(model) -> torch.device:
    """The device the input embedding runs on: the accelerate hook's execution device when it has one
    (offloaded weights sit on ``meta``), else its weight's device, else the first parameter's."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None:
        hook_device = getattr(getattr(emb, "_hf_hook", None), "execution_device", None)
        if hook_device is not None:
            return torch.device(f"cuda:{hook_device}" if isinstance(hook_device, int) else hook_device)
        weight = getattr(emb, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.device.type != "meta":
            return weight.device
    return next(model.parameters()).device


def accepts(model, name: str) -> bool:
    """Whether ``model.forward`` names the argument ``name`` (a ``**kwargs`` catch-all does not count:
    what it does with an unknown name is the model's business)."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def forward(model, last_logits_only: bool = False, **inputs):
    """``model(**inputs)`` without a KV cache; with ``last_logits_only`` the model is asked for the last
    position's logits only (``logits_to_keep=1``, or the older ``num_logits_to_keep=1``) where it can be."""
    extra = {"use_cache": False} if accepts(model, "use_cache") else {}
    if last_logits_only:
        for name in ("logits_to_keep", "num_logits_to_keep"):
            if accepts(model, name):
                extra[name] = 1
                break
    return model(**inputs, **extra)
