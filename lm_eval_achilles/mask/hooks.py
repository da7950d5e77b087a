"""The one owner of PyTorch forward hooks in this package.

Every place that needs to see or change a module's output (masking, stage 1, the baseline rankers, the
precision study) goes through :func:`hooked`, which registers the hooks on named modules and removes
them in ``finally``, so no hook outlives its ``with`` block, whatever happens inside it. :class:`Recorder`
is the common special case: keep each module's output from one forward pass.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
>>> with Recorder(model, ["0"]) as rec:
...     _ = model(torch.ones(1, 2))
>>> tuple(rec.outputs["0"].shape)
(1, 3)
>>> def zero_channel_1(_module, _inputs, output):
...     output[..., 1] = 0
...     return output
>>> with hooked(model, {"0": zero_channel_1}):
...     float(model[0](torch.ones(1, 2))[0, 1])
0.0
>>> len(model[0]._forward_hooks)  # removed on exit
0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.models.forward import forward, input_device

Hook = Callable[..., Any]


def resolve_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map module paths to modules; an unknown path is an error (never silently skipped)."""
    table = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in table:
            raise AchillesError(f"unknown module {name!r} (not in model.named_modules())")
        out[name] = table[name]
    return out


def first_tensor(output: Any) -> Any:
    """The tensor a module output stands for: the output itself, or the first element of a tuple."""
    return output[0] if isinstance(output, tuple) else output


def replace_first(output: Any, tensor: torch.Tensor) -> Any:
    """``output`` with its tensor (see :func:`first_tensor`) replaced by ``tensor``."""
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def hooked(model: nn.Module, hooks: Mapping[str, Hook], pre: bool = False) -> Iterator[None]:
    """Register ``hooks[name]`` on module ``name`` of ``model`` while the context is open.

    Hooks have PyTorch's signatures: ``hook(module, inputs, output)`` for forward hooks, or
    ``hook(module, inputs)`` with ``pre=True`` (forward pre-hooks). A hook that returns a value replaces
    the output (inputs for pre-hooks). All handles are removed on exit, also on an exception."""
    modules = resolve_modules(model, hooks)
    handles = []
    try:
        for name, hook in hooks.items():
            register = modules[name].register_forward_pre_hook if pre else modules[name].register_forward_hook
            handles.append(register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class Recorder:
    """Keep the output tensor of each named module from the forward passes run inside the context.

    ``outputs[name]`` is the module's first output (detached) whose number of dimensions is ``ndim``
    (any number when ``ndim`` is None); a module called several times keeps its first such output.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], ndim: int | None = None):
        self.model = model
        self.names = list(names)
        self.ndim = ndim
        self.outputs: dict[str, torch.Tensor] = {}
        self._context = None

    def _hook(self, name: str) -> Hook:
        def hook(_module, _inputs, output):
            t = first_tensor(output)
            if isinstance(t, torch.Tensor) and (self.ndim is None or t.dim() == self.ndim):
                self.outputs.setdefault(name, t.detach())

        return hook

    def __enter__(self) -> Recorder:
        self._context = hooked(self.model, {name: self._hook(name) for name in self.names})
        self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)
        self._context = None


def output_sizes(model: nn.Module, names: Iterable[str]) -> dict[str, int]:
    """Last-dimension size of each module's output, read from one tiny forward pass."""
    names = list(names)
    with Recorder(model, names) as rec, torch.no_grad():
        forward(model, True, input_ids=torch.zeros(1, 2, dtype=torch.long, device=input_device(model)))
    sizes = {name: int(t.shape[-1]) for name, t in rec.outputs.items() if t.dim() >= 1}
    for name in names:
        if name not in sizes:
            raise AchillesError(f"module {name!r} produced no tensor output in a forward pass; it cannot be masked")
    return sizes
