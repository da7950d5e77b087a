"""The row-delta: trainable copies of the slices the selected neurons own, attached to a frozen model,
and its artifact ``achilles-delta/1`` (docs/finetune.md, "The delta artifact").

While training, the base model is never written: every selected Linear/Conv1D gets a forward hook that
overwrites its output channels ``idx`` with ``x @ rows.T + b_rows`` computed from the trainable copies,
and every selected norm gets a parametrisation ``weight.index_copy(0, idx, rows)``. The optimizer sees
only the copies, so its state is the size of the slices, and weight decay cannot reach a frozen value.
Merging writes the copies into the weights (``W[idx] = rows``); every other entry stays bit-identical.

The artifact is a folder: ``delta.safetensors`` (one tensor per trained slice) and ``achilles-delta.json``
(format, model fingerprint and weights digest of the base, neurons, slices, data hash, settings, steps,
final loss, the tensors' sha256). The JSON is written last, atomically: a folder without it holds no result.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.finetune.neurons import Slice, kind_of, owned_slices
from lm_eval_achilles.mask.hooks import first_tensor, hooked, replace_first, resolve_modules
from lm_eval_achilles.mask.mask_file import Neuron

FORMAT = "achilles-delta/1"
META = "achilles-delta.json"
TENSORS = "delta.safetensors"
RESULTS = (META, TENSORS)


class RowDelta(nn.Module):
    """Trainable copies of the slices ``neurons`` own on ``model`` (initialised from the model's values)."""

    def __init__(self, model: nn.Module, neurons: Sequence[Neuron], values: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.model = [model]  # a list: not a submodule, so parameters() holds the copies only
        self.neurons = list(neurons)
        self.slices = owned_slices(model, self.neurons)
        self.modules_ = resolve_modules(model, {s.module for s in self.slices})
        self.copies = nn.ParameterList()
        for s in self.slices:
            p = getattr(self.modules_[s.module], s.param)
            idx = torch.tensor(s.channels, device=p.device)
            init = p.detach().index_select(s.dim, idx).clone()
            if values is not None:
                if s.key not in values:
                    raise AchillesError(f"delta: no tensor for slice {s.key}")
                v = values[s.key]
                if tuple(v.shape) != tuple(init.shape):
                    raise AchillesError(
                        f"delta: tensor {s.key} has shape {tuple(v.shape)}, expected {tuple(init.shape)}"
                    )
                init = v.to(device=p.device, dtype=p.dtype).clone()
            self.copies.append(nn.Parameter(init.float() if init.dtype in (torch.float16, torch.bfloat16) else init))

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.copies)

    def _by_module(self):
        out: dict[str, dict[str, tuple[Slice, nn.Parameter]]] = {}
        for s, c in zip(self.slices, self.copies):
            out.setdefault(s.module, {})[s.param] = (s, c)
        return out

    @contextmanager
    def attached(self) -> Iterator[None]:
        """The model computes with the copies while the context is open (hooks/parametrisations removed after)."""
        from torch.nn.utils import parametrize

        hooks, norms = {}, []
        for name, parts in self._by_module().items():
            module = self.modules_[name]
            if kind_of(module) == "norm":
                norms.append((module, parts))
            else:
                hooks[name] = _row_hook(kind_of(module), parts)
        try:
            for module, parts in norms:
                for param, (s, c) in parts.items():
                    parametrize.register_parametrization(module, param, _IndexCopy(s.channels, c), unsafe=True)
            with hooked(self.model[0], hooks):
                yield
        finally:
            for module, parts in norms:
                for param in parts:
                    if parametrize.is_parametrized(module, param):
                        parametrize.remove_parametrizations(module, param, leave_parametrized=False)

    @torch.no_grad()
    def merge(self) -> None:
        """Write the copies into the model's weights (only the owned entries change)."""
        for s, c in zip(self.slices, self.copies):
            p = getattr(self.modules_[s.module], s.param)
            p.index_copy_(s.dim, torch.tensor(s.channels, device=p.device), c.detach().to(p.dtype))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {s.key: c.detach().cpu().contiguous() for s, c in zip(self.slices, self.copies)}


class _IndexCopy(nn.Module):
    def __init__(self, channels, rows: nn.Parameter):
        super().__init__()
        self.register_buffer("idx", torch.tensor(channels), persistent=False)
        self.rows = [rows]  # not registered: the delta owns it

    def forward(self, w):
        r = self.rows[0]
        return w.index_copy(0, self.idx.to(w.device), r.to(w.dtype))


def _row_hook(kind: str, parts):
    weight = parts["weight"]
    bias = parts.get("bias")
    idx_cpu = torch.tensor(weight[0].channels)

    def hook(_module, inputs, output):
        x = inputs[0]
        out = first_tensor(output)
        w = weight[1].to(x.dtype)
        b = bias[1].to(x.dtype) if bias is not None else None
        if kind == "conv1d":  # weight slice [in, k]
            new = x @ w
            if b is not None:
                new = new + b
        else:
            new = torch.nn.functional.linear(x, w, b)
        return replace_first(output, out.index_copy(-1, idx_cpu.to(out.device), new.to(out.dtype)))

    return hook


# --------------------------------------------------------------------------- the artifact


@dataclass
class DeltaFile:
    """A loaded ``achilles-delta/1`` folder."""

    path: Path
    meta: dict[str, Any]
    neurons: list[Neuron]
    tensors: dict[str, torch.Tensor] = field(repr=False)

    def check_model(self, model, allow_mismatch: bool = False) -> None:
        """Refuse a delta trained on another model: architecture (fingerprint) and weights (digest) must
        both match, since the delta holds absolute values of the base's rows."""
        from lm_eval_achilles.models.loading import fingerprint, weights_digest

        m = self.meta["model"]
        problems = []
        fp = fingerprint(model)
        if fp != m["fingerprint"]:
            problems.append(f"fingerprint {m['fingerprint']}, this model's is {fp}")
        else:
            wd = weights_digest(model)
            if wd != m.get("weights_digest"):
                problems.append(f"weights digest {m.get('weights_digest')}, this model's is {wd}")
        if problems and not allow_mismatch:
            raise AchillesError(
                f"delta {self.path} was trained on another model ({m.get('name_or_path')}: {problems[0]}); "
                "load the base model it was trained on"
            )

    def row_delta(self, model) -> RowDelta:
        self.check_model(model)
        return RowDelta(model, self.neurons, self.tensors)

    def apply(self, model) -> dict[str, Any]:
        """Merge into ``model`` in place (after checking it is the base model the delta was trained on);
        returns its provenance."""
        self.row_delta(model).merge()
        return {
            "delta": str(self.path),
            "tensors_sha256": self.meta["tensors_sha256"],
            "n_neurons": len(self.neurons),
            "trainable_values": self.meta.get("trainable_values"),
            "steps": self.meta.get("steps"),
        }


def save_delta(out: str | os.PathLike, delta: RowDelta, loaded, info: dict[str, Any]) -> Path:
    """Write the artifact folder: tensors first (atomically), then the JSON (atomically) naming their hash."""
    from safetensors.torch import save_file

    from lm_eval_achilles.jsonio import write_json_atomic
    from lm_eval_achilles.models.loading import fingerprint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{TENSORS}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(delta.tensors(), tmp)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, out / TENSORS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    model = loaded.model
    meta = {
        "format": FORMAT,
        "model": {
            "name_or_path": loaded.name_or_path,
            "architecture": type(model).__name__,
            "fingerprint": fingerprint(model),
            "weights_digest": info.pop("base_weights_digest"),
        },
        "neurons": [{"module": n.module, "channel": n.channel} for n in delta.neurons],
        "slices": [
            {"key": s.key, "module": s.module, "param": s.param, "dim": s.dim, "channels": list(s.channels)}
            for s in delta.slices
        ],
        "trainable_values": delta.trainable_count(),
        "tensors": TENSORS,
        "tensors_sha256": digest,
        **info,
    }
    write_json_atomic(out / META, meta)
    return out


def _need(d, key, kind, where):
    if not isinstance(d, dict) or key not in d or not isinstance(d[key], kind):
        raise AchillesError(f"{where}: missing or bad field {key!r}")
    return d[key]


def read_delta_meta(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The folder and its validated JSON (no tensors): enough to refuse a bad ``delta=`` before loading."""
    p = Path(path)
    meta_path = p / META if p.is_dir() else p
    if not meta_path.is_file():
        raise AchillesError(f"delta not found: {meta_path} (give the folder `achilles finetune --out` wrote)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AchillesError(f"{meta_path}: malformed JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise AchillesError(f"{meta_path}: format must be {FORMAT!r}, got {got!r}")
    m = _need(meta, "model", dict, str(meta_path))
    _need(m, "fingerprint", str, f"{meta_path}: model")
    for i, n in enumerate(_need(meta, "neurons", list, str(meta_path))):
        _need(n, "module", str, f"{meta_path}: neurons[{i}]")
        _need(n, "channel", int, f"{meta_path}: neurons[{i}]")
    _need(meta, "tensors_sha256", str, str(meta_path))
    if not (meta_path.parent / TENSORS).is_file():
        raise AchillesError(f"delta {meta_path.parent}: {TENSORS} is missing")
    return meta_path.parent, meta


def load_delta(path: str | os.PathLike) -> DeltaFile:
    from safetensors.torch import load_file

    folder, meta = read_delta_meta(path)
    blob = folder / TENSORS
    if hashlib.sha256(blob.read_bytes()).hexdigest() != meta["tensors_sha256"]:
        raise AchillesError(f"delta {folder}: {TENSORS} does not match the hash in {META} (a partial or mixed copy)")
    neurons = [Neuron(n["module"], n["channel"]) for n in meta["neurons"]]
    return DeltaFile(folder, meta, neurons, load_file(str(blob)))
