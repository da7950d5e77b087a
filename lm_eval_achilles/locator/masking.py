"""Applying a neuron mask: forward hooks (a context manager) and folding into the weights.

Masking neuron (module, c) replaces channel c of the module's output by ``scale * value`` (0 by default)
at every position and every batch row, in prefill and in each KV-cache decoding step, because the hook
fires on every forward call of the module. Tuple outputs have their first element masked. Index tensors
are kept per device, so a model spread over several GPUs is masked on each output's own device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.hooks import first_tensor, hooked, output_sizes, replace_first, resolve_modules
from lm_eval_achilles.locator.mask_file import Neuron, distinct


def validate_neurons(
    model: nn.Module, neurons: Sequence[Neuron], sizes: dict[str, int] | None = None
) -> dict[str, int]:
    """Every module must exist and every channel must be inside its output: nothing is silently unmasked.

    Returns the output sizes (pass them on to :func:`row_masked` to save a forward pass)."""
    if not neurons:
        return {}
    sizes = sizes if sizes is not None else output_sizes(model, {n.module for n in neurons})
    for n in neurons:
        if not 0 <= n.channel < sizes[n.module]:
            raise AchillesError(
                f"channel {n.channel} out of range for module {n.module!r} (output has {sizes[n.module]} channels)"
            )
    return sizes


def declared_output_size(module: nn.Module) -> int | None:
    """A module's output width as its parameters declare it (Linear, transformers' Conv1D, Embedding,
    norms with a per-channel weight), or None when only a forward pass can tell."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    if type(module).__name__ == "Conv1D" and isinstance(getattr(module, "nf", None), int):
        return module.nf  # transformers' Conv1D (GPT-2): weight is (in, out)
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 1 and not list(module.children()):
        return int(weight.shape[0])  # LayerNorm, RMSNorm and the like
    return None


def validate_declared(model: nn.Module, neurons: Sequence[Neuron]) -> None:
    """:func:`validate_neurons` without a forward pass, for a weightless model (``load_skeleton``):
    every module must exist, and every channel must fit where the module declares its output size."""
    modules = resolve_modules(model, {n.module for n in neurons})
    for n in neurons:
        size = declared_output_size(modules[n.module])
        if size is not None and not 0 <= n.channel < size:
            raise AchillesError(
                f"channel {n.channel} out of range for module {n.module!r} (output has {size} channels)"
            )


def group_channels(neurons: Iterable[Neuron]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for n in distinct(neurons):
        groups.setdefault(n.module, []).append(n.channel)
    return groups


class _PerDevice:
    """One index tensor, copied lazily to whichever device an output lives on."""

    def __init__(self, values):
        self.cpu = torch.as_tensor(values)
        self.copies: dict[torch.device, torch.Tensor] = {}

    def on(self, device: torch.device) -> torch.Tensor:
        t = self.copies.get(device)
        if t is None:
            t = self.copies[device] = self.cpu.to(device)
        return t


def _masking_hook(channels: list[int], scale: float):
    index = _PerDevice(channels)

    def hook(_module, inputs, output):
        t = first_tensor(output)
        if not isinstance(t, torch.Tensor):
            return output
        idx = index.on(t.device)
        # Write in place unless autograd needs the original or the output aliases an input
        # (e.g. an identity/dropout module returning its input): then work on a copy.
        aliased = any(isinstance(i, torch.Tensor) and i.data_ptr() == t.data_ptr() for i in inputs)
        if t.requires_grad or aliased:
            t = t.clone()
        if scale == 0.0:
            t.index_fill_(-1, idx, 0.0)
        else:
            t.index_copy_(-1, idx, t.index_select(-1, idx) * scale)
        return replace_first(output, t)

    return hook


@contextmanager
def masked(model: nn.Module, neurons: Sequence[Neuron], scale: float = 0.0, validate: bool = True) -> Iterator[None]:
    """Mask ``neurons`` (same mask for every batch row) while the context is open; hooks always removed."""
    if validate:
        validate_neurons(model, neurons)
    groups = group_channels(neurons)
    with hooked(model, {name: _masking_hook(ch, float(scale)) for name, ch in groups.items()}):
        yield


def _row_hook(rows: torch.Tensor, scale: float):
    mask = _PerDevice(rows)

    def hook(_module, _inputs, output):
        t = first_tensor(output)
        m = mask.on(t.device)
        if t.shape[0] != m.shape[0]:
            raise AchillesError(f"per-row mask has {m.shape[0]} rows but the batch has {t.shape[0]}")
        m = m.view(m.shape[0], *([1] * (t.dim() - 2)), m.shape[1])
        replacement = torch.zeros((), dtype=t.dtype, device=t.device) if scale == 0.0 else t * scale
        return replace_first(output, torch.where(m, replacement, t))

    return hook


@contextmanager
def row_masked(
    model: nn.Module, rows: Sequence[Sequence[Neuron]], scale: float = 0.0, sizes: dict[str, int] | None = None
) -> Iterator[None]:
    """A different mask per batch row: row i of every batch masks ``rows[i]``.

    This is how stage 2 (and the subset study) evaluate many candidate sets in one batched forward.
    ``sizes`` (from :func:`validate_neurons`) skips the validation forward pass when already done.
    """
    union = distinct(n for row in rows for n in row)
    if sizes is None or any(n.module not in sizes for n in union):
        sizes = validate_neurons(model, union)
    used = {n.module for n in union}
    tables = {name: torch.zeros(len(rows), sizes[name], dtype=torch.bool) for name in used}
    for i, row in enumerate(rows):
        for n in row:
            tables[n.module][i, n.channel] = True
    with hooked(model, {name: _row_hook(t, float(scale)) for name, t in tables.items()}):
        yield


def _foldable_params(module: nn.Module, name: str) -> list[nn.Parameter]:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() not in (1, 2):
        raise AchillesError(
            f"cannot fold a mask into {name!r} ({type(module).__name__}): it has no per-output-channel weight; use apply=hooks"
        )
    params = [weight]
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        params.append(bias)
    return params


def fold(model: nn.Module, neurons: Sequence[Neuron], scale: float = 0.0, validate: bool = True) -> list:
    """Write the mask into the weights (output row c of a Linear, entry c of a norm's weight/bias).

    Returns the saved original values; pass them to :func:`unfold` to restore the weights bit for bit.
    """
    if validate:
        validate_neurons(model, neurons)
    groups = group_channels(neurons)
    modules = resolve_modules(model, groups)
    saved = []
    with torch.no_grad():
        for name, channels in groups.items():
            params = _foldable_params(modules[name], name)
            for p in params:
                idx = torch.as_tensor(channels, device=p.device)
                saved.append((p, idx, p.index_select(0, idx).clone()))
            for p in params:
                idx = torch.as_tensor(channels, device=p.device)
                p.index_copy_(0, idx, p.index_select(0, idx) * scale)
    return saved


def unfold(saved: list) -> None:
    with torch.no_grad():
        for p, idx, values in reversed(saved):
            p.index_copy_(0, idx, values)


@contextmanager
def folded(model: nn.Module, neurons: Sequence[Neuron], scale: float = 0.0) -> Iterator[None]:
    """The mask folded into the weights while the context is open; weights restored exactly afterwards."""
    saved = fold(model, neurons, scale)
    try:
        yield
    finally:
        unfold(saved)
