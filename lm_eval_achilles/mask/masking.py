"""Applying a neuron mask: forward hooks (a context manager) and folding into the weights.

Masking neuron (module, c) replaces channel c of the module's output by ``scale * value`` (0 by default)
at every position and every batch row, in prefill and in each KV-cache decoding step, because the hook
fires on every forward call of the module. Tuple outputs have their first element masked. Index tensors
are kept per device, so a model spread over several GPUs is masked on each output's own device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.hooks import first_tensor, hooked, output_sizes, replace_first, resolve_modules
from lm_eval_achilles.mask.mask_file import Neuron, distinct


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


#: Relative tolerance of the check that a folded module reproduces the hooked output, per dtype.
_FOLD_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def _is_norm(module: nn.Module) -> bool:
    """LayerNorm/RMSNorm: the torch classes, or any class whose name ends so (LlamaRMSNorm, Gemma3RMSNorm...).
    Other norms (batch, group) scale channel dimension 1, not the last one, and are refused."""
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith(("RMSNorm", "LayerNorm"))


@dataclass
class _FoldPlan:
    """How channel c of a module's output maps to its parameters: ``(param, dim)`` pairs whose slice c along
    ``dim`` produces output channel c alone; ``in_dim`` sizes the probe input of the exactness check;
    ``variants`` are the parametrisations a norm's gain may have (``w`` or ``1 + w``: see
    :func:`_norm_variant`); ``check`` is the module whose output the exactness check compares (the
    module itself, or the gated MLP around an activation, whose mask is folded into ``up_proj``)."""

    name: str
    module: nn.Module
    params: list[tuple[torch.Tensor, int]]
    in_dim: int
    variants: tuple[str, ...] = ("scale",)
    check: nn.Module | None = None


def _gated_mlp_parent(model: nn.Module, name: str, module: nn.Module):
    """The gated MLP holding activation ``name`` as its ``act_fn`` (``down(act(gate(x)) * up(x))``, the Llama,
    Qwen, Mistral and Gemma MLP), or None."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    up, gate = getattr(parent, "up_proj", None), getattr(parent, "gate_proj", None)
    if attr != "act_fn" or list(module.parameters()) or not isinstance(up, nn.Linear):
        return None
    if not isinstance(gate, nn.Linear) or gate.out_features != up.out_features or gate.in_features != up.in_features:
        return None
    return parent


def _fold_plan(model: nn.Module, module: nn.Module, name: str) -> _FoldPlan:
    """The fold of one module, or an AchillesError for a module kind whose channels cannot be folded."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    bias = bias if isinstance(bias, torch.Tensor) else None
    kind = type(module).__name__
    refuse = (
        f"cannot fold a mask into {name!r} ({kind}): fold supports nn.Linear, transformers' Conv1D, "
        f"LayerNorm/RMSNorm weights and the activation of a gated MLP; use apply=hooks"
    )
    parent = _gated_mlp_parent(model, name, module)
    if parent is not None:
        # down(act(g) * up(x)): act(g)_c * beta * u_c == act(g)_c * (beta * u_c), so scale row c of up_proj
        up = parent.up_proj
        params = [(up.weight, 0)] + ([(up.bias, 0)] if up.bias is not None else [])
        return _FoldPlan(name, module, params, up.in_features, check=parent)
    if not isinstance(weight, torch.Tensor) or weight.device.type == "meta":
        raise AchillesError(refuse)
    if isinstance(module, nn.Linear) and tuple(weight.shape) == (module.out_features, module.in_features):
        # weight [out, in]: output channel c is row c (and bias entry c)
        return _FoldPlan(name, module, [(weight, 0)] + ([(bias, 0)] if bias is not None else []), module.in_features)
    if (
        kind == "Conv1D"
        and weight.dim() == 2
        and tuple(weight.shape) == (getattr(module, "nx", -1), getattr(module, "nf", -1))
    ):
        # transformers' Conv1D (GPT-2 family) stores weight transposed, [in, out]: channel c is column c
        return _FoldPlan(name, module, [(weight, 1)] + ([(bias, 0)] if bias is not None else []), module.nx)
    if _is_norm(module) and weight.dim() == 1 and (bias is None or bias.shape == weight.shape):
        # y = normed(x) * w (+ b), or * (1 + w) in the Gemma family: which one is decided by _norm_variant
        return _FoldPlan(
            name,
            module,
            [(weight, 0)] + ([(bias, 0)] if bias is not None else []),
            weight.shape[0],
            ("scale", "offset"),
        )
    raise AchillesError(refuse)


def _shared_parameters(model: nn.Module, plans) -> None:
    """Refuse a fold that would write a parameter owned by more than one module (tied ``lm_head`` and
    input embeddings): the write would change the other module too, which the hooks never do."""
    owners: dict[int, list[str]] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for p in mod._parameters.values():
            if p is not None:
                owners.setdefault(id(p), []).append(mod_name)
    for plan, _ in plans:
        for p, _dim in plan.params:
            names = sorted(set(owners.get(id(p), [])))
            if len(names) > 1:
                raise AchillesError(
                    f"cannot fold a mask into {plan.name!r}: its weight is shared by {', '.join(names)} (tied "
                    "weights), so folding would change them all; use apply=hooks"
                )


def _output(plan: _FoldPlan, x: torch.Tensor) -> torch.Tensor:
    return first_tensor((plan.check or plan.module).forward(x))


def _reference(plan: _FoldPlan, channels: list[int], scale: float, x: torch.Tensor) -> torch.Tensor:
    """The hooked output the fold must reproduce (of the gated MLP, for an activation)."""
    if plan.check is None:
        return first_tensor(_masking_hook(channels, scale)(plan.module, (x,), plan.module.forward(x))).clone()
    handle = plan.module.register_forward_hook(_masking_hook(channels, scale))
    try:
        return _output(plan, x).clone()
    finally:
        handle.remove()


def _write(plan: _FoldPlan, channels: list[int], variant: str, scale: float, saved: list) -> None:
    for i, (p, dim) in enumerate(plan.params):
        idx = torch.as_tensor(channels, device=p.device)
        old = p.index_select(dim, idx)
        saved.append((p, dim, idx, old.clone()))
        if variant == "offset" and i == 0:  # gain 1 + w  ->  scale * (1 + w)
            new = ((old.double() + 1.0) * scale - 1.0).to(p.dtype)
        else:
            new = old * scale
        p.index_copy_(dim, idx, new)


def _norm_variant(plan: _FoldPlan, channels: list[int], x: torch.Tensor) -> str | None:
    """Which gain a norm has, decided exactly rather than within a tolerance: the variant whose
    encoding of a zero gain (``w = 0`` for ``normed * w``, ``w = -1`` for ``normed * (1 + w)``, bias 0)
    makes the masked channels exactly 0 on a probe whose normed values are non-zero. Multiplying by an
    exact 0 is exact in every dtype, so one large gain or bf16 rounding cannot pick the wrong one.
    None when neither does (the norm is of another kind)."""
    for variant in plan.variants:
        trial: list = []
        _write(plan, channels, variant, 0.0, trial)
        try:
            if bool((_output(plan, x)[..., channels] == 0).all()):
                return variant
        finally:
            unfold(trial)
    return None


def _fold_matches(plan: _FoldPlan, x: torch.Tensor, reference: torch.Tensor) -> bool:
    out = _output(plan, x)
    if not isinstance(out, torch.Tensor) or out.shape != reference.shape:
        return False
    rtol = _FOLD_RTOL.get(reference.dtype, 1e-5)
    scale = float(reference.float().abs().max()) + 1e-30
    return bool(((out.float() - reference.float()).abs() <= rtol * scale).all())


def fold(model: nn.Module, neurons: Sequence[Neuron], scale: float = 0.0, validate: bool = True) -> list:
    """Write the mask into the weights, exactly as the hooks would apply it (docs/method.md, "Fold").

    nn.Linear: row c of ``weight`` [out, in] and bias entry c; transformers' ``Conv1D`` (GPT-2 family,
    weight stored [in, out]): column c and bias entry c; LayerNorm/RMSNorm: entry c of weight and bias,
    where a gain of the form ``1 + w`` (Gemma) gets ``w' = scale * (1 + w) - 1`` (the form is decided
    exactly, :func:`_norm_variant`); the ``act_fn`` of a gated MLP: row c of its ``up_proj``. Any other
    module kind, and any parameter shared between modules (tied embeddings), is refused before anything
    is written. Every folded module is checked on a random probe input against its hooked output; a
    mismatch is an error. The fold is transactional: on any failure every weight already written is
    restored, so the model is left as it was.

    Returns the saved original values; pass them to :func:`unfold` to restore the weights bit for bit.
    """
    if validate:
        validate_neurons(model, neurons)
    groups = group_channels(neurons)
    modules = resolve_modules(model, groups)
    plans = [(_fold_plan(model, modules[name], name), channels) for name, channels in groups.items()]
    _shared_parameters(model, plans)
    saved: list = []
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for plan, channels in plans:
                dtype, device = plan.params[0][0].dtype, plan.params[0][0].device
                x = torch.randn(4, plan.in_dim, generator=gen).to(device=device, dtype=dtype)
                reference = _reference(plan, channels, float(scale), x)
                variant = _norm_variant(plan, channels, x) if len(plan.variants) > 1 else plan.variants[0]
                if variant is not None:
                    _write(plan, channels, variant, scale, saved)
                if variant is None or not _fold_matches(plan, x, reference):
                    raise AchillesError(
                        f"cannot fold a mask into {plan.name!r} ({type(plan.module).__name__}): folding its "
                        f"weights does not reproduce the hooked output; use apply=hooks"
                    )
    except BaseException:
        unfold(saved)
        raise
    return saved


def unfold(saved: list) -> None:
    """Restore the values :func:`fold` saved (in reverse order, so overlapping writes unwind correctly)."""
    with torch.no_grad():
        for p, dim, idx, values in reversed(saved):
            p.index_copy_(dim, idx, values)


@contextmanager
def folded(model: nn.Module, neurons: Sequence[Neuron], scale: float = 0.0) -> Iterator[None]:
    """The mask folded into the weights while the context is open; weights restored exactly afterwards."""
    saved = fold(model, neurons, scale)
    try:
        yield
    finally:
        unfold(saved)
