"""The neuron-mask data model and its JSON file format ``achilles-mask/1`` (docs/method.md, "The mask file").

A mask file holds the whole result of a locator run: the model it belongs to (with a fingerprint of
parameter names and shapes), the locator's parameters, the ranking (top entries), the critical set and
the stage-2 curve. Loading validates everything and names the offending field; writing is atomic.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.jsonio import json_safe, write_json_atomic

FORMAT = "achilles-mask/1"


@dataclass(frozen=True, order=True)
class Neuron:
    """One output channel of one module (``model.named_modules()`` path of the CausalLM root)."""

    module: str
    channel: int


@dataclass(frozen=True)
class RankedNeuron:
    module: str
    channel: int
    score: float
    position: int | None = None  # only with granularity=position (the paper's counting)

    @property
    def neuron(self) -> Neuron:
        return Neuron(self.module, self.channel)

    def to_json(self) -> dict[str, Any]:
        d = {"module": self.module, "channel": self.channel, "score": json_safe(float(self.score))}
        if self.position is not None:
            d["position"] = self.position
        return d


@dataclass
class ModelInfo:
    name_or_path: str
    architecture: str
    fingerprint: str  # parameter names and shapes: the architecture (see models.loading.fingerprint)
    weights_digest: str | None = None  # a sample of the weight values: the checkpoint (models.loading.weights_digest)


@dataclass
class Critical:
    size: int
    baseline_ppl: float
    masked_ppl: float
    delta: float
    curve: list[list[float]] = field(default_factory=list)  # [[n, ppl], ...]
    stopping_reason: str = "threshold"
    #: batched forwards of masked sets stage 2 spent (None: a file written before it was recorded)
    forward_passes: int | None = None
    #: the galloping search only: whether the points it measured were monotone (False: it fell back to the
    #: linear walk below the crossing, and ``note`` says where); None for the linear walk
    monotone: bool | None = None
    note: str = ""


@dataclass
class Minimal:
    """A smaller set than the critical prefix that still crosses epsilon (``achilles locate --minimize``,
    docs/method.md "Minimal set"). Optional in the file: masks written without ``--minimize`` have none."""

    neurons: list[Neuron]
    delta: float
    baseline_ppl: float
    masked_ppl: float
    method: str  # the search steps used, e.g. "curve+prune+exchange"
    forward_passes: int  # batched forward passes the search spent (each evaluates up to batch_size sets)
    sets_evaluated: int = 0  # candidate sets evaluated (batch rows)
    verified_minimal: bool = True  # its leave-one-out round completed: no single neuron is removable
    stopping_reason: str = "minimal"  # "minimal" or "budget" (--max-evals reached)
    seconds: float = 0.0
    start_size: int = 0  # distinct channels of the critical prefix it started from

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["neurons"] = [{"module": n.module, "channel": n.channel} for n in self.neurons]
        for key in ("delta", "baseline_ppl", "masked_ppl", "seconds"):
            d[key] = json_safe(float(d[key]))
        return d


SELECTIONS = ("critical", "minimal")


@dataclass
class MaskFile:
    model: ModelInfo
    locator: dict[str, Any]
    ranking: list[RankedNeuron]
    critical: Critical
    neurons: list[Neuron]
    format: str = FORMAT
    minimal: Minimal | None = None

    def select(self, top_n: int | None = None, which: str = "critical") -> list[Neuron]:
        """The neurons to mask: the critical set (``which="critical"``), the minimal set
        (``which="minimal"``, from ``--minimize``), or the first ``top_n`` entries of the ranking."""
        if which not in SELECTIONS:
            raise AchillesError(f"unknown selection {which!r}; choose critical or minimal")
        if which == "minimal":
            if top_n is not None:
                raise AchillesError("give either top_n or select=minimal, not both")
            if self.minimal is None:
                raise AchillesError("the mask file has no minimal set; write one with `achilles locate --minimize`")
            return list(self.minimal.neurons)
        if top_n is None:
            return list(self.neurons)
        if top_n < 0:
            raise AchillesError(f"top_n must be >= 0, got {top_n}")
        if top_n > len(self.ranking):
            raise AchillesError(
                f"top_n={top_n} is larger than the ranking in the mask file ({len(self.ranking)} entries)"
            )
        return [r.neuron for r in self.ranking[:top_n]]

    def to_json(self) -> dict[str, Any]:
        crit = asdict(self.critical)
        for key in ("baseline_ppl", "masked_ppl", "delta"):
            crit[key] = json_safe(float(crit[key]))
        crit["curve"] = [[int(n), json_safe(float(p))] for n, p in self.critical.curve]
        crit = {k: v for k, v in crit.items() if not (k in ("forward_passes", "monotone", "note") and v in (None, ""))}
        return {
            "format": self.format,
            "model": {k: v for k, v in asdict(self.model).items() if v is not None},
            "locator": self.locator,
            "critical": crit,
            "neurons": [{"module": n.module, "channel": n.channel} for n in self.neurons],
            "ranking": [r.to_json() for r in self.ranking],
            **({"minimal": self.minimal.to_json()} if self.minimal is not None else {}),
        }


def distinct(neurons) -> list[Neuron]:
    """Distinct (module, channel) pairs in first-seen order."""
    return list(dict.fromkeys(Neuron(n.module, n.channel) for n in neurons))


def save_mask(mask: MaskFile, path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file in the same folder, then rename."""
    return write_json_atomic(path, mask.to_json())


def _need(obj: dict, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise AchillesError(f"{where}: missing key {key!r}")
    value = obj[key]
    if kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind not in (float, int) and isinstance(value, kind):
        return value
    raise AchillesError(f"{where}: key {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r:.60}")


def _neuron(entry: Any, where: str) -> Neuron:
    module = _need(entry, "module", str, where)
    channel = _need(entry, "channel", int, where)
    if channel < 0:
        raise AchillesError(f"{where}: channel must be >= 0, got {channel}")
    return Neuron(module, channel)


def mask_from_json(data: Any, source: str = "mask") -> MaskFile:
    """Validate a parsed mask document; every problem names the field."""
    if not isinstance(data, dict):
        raise AchillesError(f"{source}: not a JSON object")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise AchillesError(f"{source}: format must be {FORMAT!r}, got {fmt!r}")
    m = _need(data, "model", dict, source)
    model = ModelInfo(
        name_or_path=_need(m, "name_or_path", str, f"{source}: model"),
        architecture=_need(m, "architecture", str, f"{source}: model"),
        fingerprint=_need(m, "fingerprint", str, f"{source}: model"),
        weights_digest=_need(m, "weights_digest", str, f"{source}: model") if m.get("weights_digest") else None,
    )
    locator = _need(data, "locator", dict, source)
    ranking = []
    for i, entry in enumerate(_need(data, "ranking", list, source)):
        n = _neuron(entry, f"{source}: ranking[{i}]")
        pos = entry.get("position")
        if pos is not None and (not isinstance(pos, int) or isinstance(pos, bool)):
            raise AchillesError(f"{source}: ranking[{i}]: position must be int")
        ranking.append(RankedNeuron(n.module, n.channel, _need(entry, "score", float, f"{source}: ranking[{i}]"), pos))
    c = _need(data, "critical", dict, source)
    curve = _need(c, "curve", list, f"{source}: critical")
    try:
        curve = [[int(n), float(p)] for n, p in curve]
    except (TypeError, ValueError) as exc:
        raise AchillesError(f"{source}: critical.curve must be a list of [n, ppl] pairs") from exc
    critical = Critical(
        size=_need(c, "size", int, f"{source}: critical"),
        baseline_ppl=_need(c, "baseline_ppl", float, f"{source}: critical"),
        masked_ppl=_need(c, "masked_ppl", float, f"{source}: critical"),
        delta=_need(c, "delta", float, f"{source}: critical"),
        curve=curve,
        stopping_reason=str(c.get("stopping_reason", "threshold")),
        **_optional(c, (("forward_passes", int), ("monotone", bool), ("note", str)), f"{source}: critical"),
    )
    neurons = [_neuron(e, f"{source}: neurons[{i}]") for i, e in enumerate(_need(data, "neurons", list, source))]
    if not neurons and not ranking:
        raise AchillesError(f"{source}: the mask has neither neurons nor a ranking (nothing to mask)")
    minimal = _minimal(data["minimal"], f"{source}: minimal") if data.get("minimal") is not None else None
    return MaskFile(model=model, locator=locator, ranking=ranking, critical=critical, neurons=neurons, minimal=minimal)


def _optional(block: dict, keys, where: str) -> dict[str, Any]:
    """The optional keys of a block that are present, type-checked like the required ones (a null is refused)."""
    return {key: _need(block, key, kind, where) for key, kind in keys if key in block}


def _minimal(m: Any, where: str) -> Minimal:
    """The optional ``minimal`` block: required keys checked like ``critical``'s, the rest defaulted."""
    entries = _need(m, "neurons", list, where)
    if not entries:
        raise AchillesError(f"{where}: neurons is empty")
    optional = _optional(
        m,
        (
            ("sets_evaluated", int),
            ("verified_minimal", bool),
            ("stopping_reason", str),
            ("seconds", float),
            ("start_size", int),
        ),
        where,
    )
    return Minimal(
        neurons=[_neuron(e, f"{where}: neurons[{i}]") for i, e in enumerate(entries)],
        delta=_need(m, "delta", float, where),
        baseline_ppl=_need(m, "baseline_ppl", float, where),
        masked_ppl=_need(m, "masked_ppl", float, where),
        method=_need(m, "method", str, where),
        forward_passes=_need(m, "forward_passes", int, where),
        **optional,
    )


def load_mask(path: str | os.PathLike) -> MaskFile:
    path = Path(path)
    if not path.is_file():
        raise AchillesError(f"mask file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AchillesError(f"{path}: malformed JSON ({exc})") from exc
    return mask_from_json(data, str(path))


def check_fingerprint(
    mask: MaskFile, model_fingerprint: str, allow_mismatch: bool = False, weights_digest: str | None = None
) -> None:
    """Refuse a mask made for another architecture; ``allow_mismatch`` turns the error into a warning.

    The fingerprint is architecture-level on purpose (docs/method.md, "Fingerprint"): a mask located on
    a checkpoint applies to its fine-tunes, which share its critical neurons. When both sides know their
    weights (``weights_digest``) and they differ, a warning says so, so it is never a silent surprise."""
    import warnings

    if mask.model.fingerprint == model_fingerprint:
        if weights_digest and mask.model.weights_digest and weights_digest != mask.model.weights_digest:
            warnings.warn(
                f"the mask was located on other weights of this architecture ({mask.model.name_or_path}, weights "
                f"{mask.model.weights_digest}; these are {weights_digest}); applying it, since fine-tunes share "
                "critical neurons (the fingerprint checks the architecture only)",
                stacklevel=2,
            )
        return
    msg = (
        f"mask was made for another model ({mask.model.name_or_path}, fingerprint {mask.model.fingerprint}); "
        f"this model's fingerprint is {model_fingerprint} (the fingerprint covers parameter names and shapes, "
        "i.e. the architecture: fine-tunes of one architecture share it and their masks)"
    )
    if not allow_mismatch:
        raise AchillesError(msg + "; pass allow_fingerprint_mismatch=true / --allow-fingerprint-mismatch to override")
    warnings.warn(msg + "; continuing because the mismatch was explicitly allowed", stacklevel=2)
