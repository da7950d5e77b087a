"""Which neurons ``achilles finetune`` trains, and which parameter slices each one owns.

A neuron is the package's ``(module, output channel)``. It owns exactly the slices that *produce* that
channel, the same ones ``fold()`` writes (docs/finetune.md, "What is trained"):

- ``nn.Linear``: row c of ``weight`` [out, in] and ``bias[c]``;
- transformers' ``Conv1D`` (GPT-2 family, weight stored [in, out]): column c of ``weight`` and ``bias[c]``;
- LayerNorm/RMSNorm: ``weight[c]`` (and ``bias[c]``), whatever the gain's form (``w`` or ``1 + w``).

The outgoing column c of the next projection is *not* owned: it is shared by the next module's every
output and is left frozen. A module without parameters (``act_fn``) owns nothing and is refused: pick the
``gate_proj``/``up_proj`` row of the same channel instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.hooks import resolve_modules
from lm_eval_achilles.mask.mask_file import Neuron, distinct

CHOICES = ("keystone", "critical", "minimal", "random")


@dataclass(frozen=True)
class Slice:
    """One trained slice: entries ``channels`` of parameter ``param`` of ``module`` along ``dim``."""

    module: str
    param: str  # "weight" or "bias"
    dim: int
    channels: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.module}.{self.param}"


def kind_of(module: nn.Module) -> str | None:
    """ "linear", "conv1d", "norm", or None for a module whose channels own no parameter slice."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    name = type(module).__name__
    if isinstance(module, nn.Linear):
        return "linear"
    if name == "Conv1D" and weight.dim() == 2:
        return "conv1d"
    is_norm = isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or name.endswith(("RMSNorm", "LayerNorm"))
    if is_norm and weight.dim() == 1:
        return "norm"
    return None


def owned_slices(model: nn.Module, neurons: Sequence[Neuron]) -> list[Slice]:
    """The slices the neurons own, per module and parameter, channels sorted; refuses a module kind
    without slices and a channel outside the module."""
    groups: dict[str, list[int]] = {}
    for n in distinct(neurons):
        groups.setdefault(n.module, []).append(n.channel)
    if not groups:
        raise AchillesError("no neurons selected to fine-tune")
    modules = resolve_modules(model, groups)
    out = []
    for name, channels in groups.items():
        module = modules[name]
        kind = kind_of(module)
        if kind is None:
            raise AchillesError(
                f"cannot fine-tune neurons of {name!r} ({type(module).__name__}): it has no weight row per output "
                "channel (fine-tune supports Linear, Conv1D and LayerNorm/RMSNorm); for act_fn use gate_proj/up_proj"
            )
        dim = 1 if kind == "conv1d" else 0
        size = module.weight.shape[dim]
        bad = [c for c in channels if not 0 <= c < size]
        if bad:
            raise AchillesError(f"channel {bad[0]} out of range for module {name!r} (output has {size} channels)")
        ch = tuple(sorted(channels))
        out.append(Slice(name, "weight", dim, ch))
        if isinstance(getattr(module, "bias", None), torch.Tensor):
            out.append(Slice(name, "bias", 0, ch))
    return out


def trainable_modules(model: nn.Module, select: str | None = None) -> list[str]:
    """The package's candidate modules (mlp/attention leaves) that own per-channel slices."""
    from lm_eval_achilles.locator.candidates import candidate_modules

    table = dict(model.named_modules())
    names = [n for n in candidate_modules(model, select) if kind_of(table[n]) is not None]
    if not names:
        raise AchillesError("no candidate module with trainable per-channel weights (Linear, Conv1D, norm)")
    return names


def keystone_neurons(loaded, top_n: int, modules: list[str], text: str | None = None) -> list[Neuron]:
    """The top ``top_n`` of the package's ``keystone`` ranker (the one call into the locator). The
    keystone candidates are the channels in their module's top fraction rho for every prompt; when fewer
    than ``top_n`` survive at the default rho, rho is doubled until enough do (docs/finetune.md)."""
    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.rankers import get_ranker

    ids = loaded.tokenizer(text or PROBE_TEXT, return_tensors="pt").input_ids
    cfg = LocatorConfig(ranking_size=max(top_n, 1), progress=False)
    while True:
        try:
            ranking = get_ranker("keystone")(loaded.model, loaded.tokenizer, ids, modules, cfg)
        except AchillesError:
            ranking = []
        if len(ranking) >= top_n or cfg.keystone_fraction >= 1:
            break
        cfg = LocatorConfig.build(cfg, keystone_fraction=min(1.0, cfg.keystone_fraction * 2))
    if len(ranking) < top_n:
        raise AchillesError(f"only {len(ranking)} keystone candidates in these modules; ask for --top-n {len(ranking)}")
    return [r.neuron for r in ranking[:top_n]]


def random_neurons(model: nn.Module, top_n: int, modules: list[str], seed: int) -> list[Neuron]:
    """``top_n`` channels drawn uniformly from every channel of ``modules`` (seeded)."""
    sizes = [(m, _out_size(model, m)) for m in modules]
    total = sum(s for _, s in sizes)
    if top_n > total:
        raise AchillesError(f"top_n={top_n} is larger than the {total} channels of the candidate modules")
    pick = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:top_n].sort().values.tolist()
    out, start, i = [], 0, 0
    for m, s in sizes:
        while i < len(pick) and pick[i] < start + s:
            out.append(Neuron(m, pick[i] - start))
            i += 1
        start += s
    return out


def matched_random(model: nn.Module, neurons: Sequence[Neuron], seed: int) -> list[Neuron]:
    """Random channels with the same count per module as ``neurons`` (a same-modules control)."""
    gen = torch.Generator().manual_seed(int(seed))
    counts: dict[str, int] = {}
    for n in distinct(neurons):
        counts[n.module] = counts.get(n.module, 0) + 1
    out = []
    for m, k in counts.items():
        out += [Neuron(m, int(c)) for c in torch.randperm(_out_size(model, m), generator=gen)[:k].sort().values]
    return out


def _out_size(model, name) -> int:
    module = resolve_modules(model, [name])[name]
    kind = kind_of(module)
    if kind is None:
        raise AchillesError(f"module {name!r} owns no per-channel weights")
    return module.weight.shape[1 if kind == "conv1d" else 0]


def read_neuron_file(path: str | Path, top_n: int | None = None, select: str = "critical"):
    """Neurons from a file: a mask file (``achilles-mask/1``: its critical/minimal set, or the first
    ``top_n`` of its ranking), or a JSON list of ``[module, channel]`` pairs / ``{"module", "channel"}``
    objects. Returns ``(neurons, mask_file_or_None)``."""
    from lm_eval_achilles.mask.mask_file import load_mask

    p = Path(path)
    if not p.is_file():
        raise AchillesError(f"neuron file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AchillesError(f"{p}: malformed JSON ({exc})") from None
    if isinstance(data, dict):
        mask = load_mask(p)
        neurons = distinct(mask.select(top_n, select))
        if not neurons:
            raise AchillesError(f"the mask {p} selects no neurons (empty critical set); pass --top-n N")
        return neurons, mask
    if not isinstance(data, list) or not data:
        raise AchillesError(f"{p}: expected a mask file or a non-empty JSON list of [module, channel] pairs")
    out = []
    for i, e in enumerate(data):
        m, c = (
            (e.get("module"), e.get("channel"))
            if isinstance(e, dict)
            else (e if isinstance(e, list) and len(e) == 2 else (None, None))
        )
        if not isinstance(m, str) or not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise AchillesError(f"{p}: entry {i} must be [module, channel] with a channel >= 0, got {e!r:.60}")
        out.append(Neuron(m, c))
    out = distinct(out)
    return (out[:top_n] if top_n else out), None
