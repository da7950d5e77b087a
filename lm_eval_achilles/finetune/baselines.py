"""The comparison arms, each as the parameters the shared loop (:func:`..train.train`) optimises:

- ``full``: every parameter of the model;
- ``lora``: LoRA adapters through ``peft`` (``lora_dropout=0``, so the forward is deterministic), merged
  into the weights afterwards with ``merge_and_unload``;
- selected rows: :class:`..delta.RowDelta` (keystone, random, critical ... neurons).
"""

from __future__ import annotations

from lm_eval_achilles.errors import AchillesError


def full_parameters(model) -> list:
    for p in model.parameters():
        p.requires_grad_(True)
    return list(model.parameters())


def freeze(model) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def lora_model(model, r: int = 8, alpha: float | None = None, targets=("q_proj", "v_proj"), seed: int = 0):
    """``model`` wrapped with LoRA adapters (rank ``r``, scale ``alpha / r``; default alpha = 2 r) on the
    modules named ``targets``; returns ``(peft_model, trainable parameters)``. Adapter init is seeded."""
    import torch

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise AchillesError("the LoRA baseline needs peft: pip install 'lm_eval_achilles[finetune]'") from None
    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=0.0, target_modules=list(targets)
    )
    peft_model = get_peft_model(model, cfg)
    return peft_model, [p for p in peft_model.parameters() if p.requires_grad]


def lora_merge(peft_model):
    """The base model with the adapters merged into its weights."""
    return peft_model.merge_and_unload()
