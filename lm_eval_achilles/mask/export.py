"""Writing a masked model as a Hugging Face checkpoint that transformers 4.x and 5.x read identically
(docs/cli.md, "export").

The configuration and tokenizer files are the source checkpoint's own, copied unchanged, except for
what a transformers-4 reader would misread: transformers 5 writes ``rope_parameters`` and ``dtype``
where 4.x reads ``rope_theta``/``rope_scaling`` and ``torch_dtype`` (a 4.x reader silently falls back
to a default rope base), and ``"tokenizer_class": "TokenizersBackend"``, a class 4.x does not have.
:func:`portable_config` and :func:`portable_tokenizer_config` add the 4.x spelling next to the 5.x
one (both versions then read the same values); a file that needs nothing is left byte for byte as it
was. Only the weights are written anew. Every file is readable by other users (mode ``0666 & ~umask``,
0644 with the usual umask).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

#: Configuration and tokenizer files copied from the source checkpoint when it has them.
SOURCE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)

#: tokenizer classes transformers 5 writes that 4.x does not know, and the 4.x class that reads the same files.
_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def _rope_legacy(rope: dict[str, Any]) -> dict[str, Any]:
    """The 4.x keys for one flat ``rope_parameters`` dict: ``rope_theta`` and, unless the type is the
    default one, ``rope_scaling`` (the same dict without the base)."""
    out: dict[str, Any] = {}
    if "rope_theta" in rope:
        out["rope_theta"] = rope["rope_theta"]
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if scaling.get("rope_type", "default") != "default":
        out["rope_scaling"] = {**scaling, "type": scaling["rope_type"]}
    return out


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a parsed config.json) with the transformers-4 spelling of every 5.x-only key added;
    keys already present are never changed. Nested configs (``text_config`` ...) are handled alike.

    Per-layer-type rope (``rope_parameters = {"full_attention": {...}, "sliding_attention": {...}}``,
    Gemma 3) maps to ``rope_theta``/``rope_scaling`` (full attention) and ``rope_local_base_freq``
    (sliding attention), the names 4.x reads."""
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, dict) and "model_type" in value:
            out[key] = portable_config(value)
    if "dtype" in out and "torch_dtype" not in out:
        out["torch_dtype"] = out["dtype"]
    rope = out.get("rope_parameters")
    if isinstance(rope, dict):
        if all(isinstance(v, dict) for v in rope.values()) and rope:
            legacy = _rope_legacy(rope.get("full_attention", {}))
            local = rope.get("sliding_attention", {})
            if "rope_theta" in local:
                legacy["rope_local_base_freq"] = local["rope_theta"]
        else:
            legacy = _rope_legacy(rope)
        for key, value in legacy.items():
            out.setdefault(key, value)
    return out


def portable_tokenizer_config(config: dict[str, Any]) -> dict[str, Any]:
    """``tokenizer_config.json`` with a tokenizer class both versions know, and ``extra_special_tokens``
    as 4.x reads it (5.x may write a list where 4.x expects a mapping: the list becomes
    ``additional_special_tokens``)."""
    out = dict(config)
    cls = out.get("tokenizer_class")
    if cls in _TOKENIZER_CLASSES:
        out["tokenizer_class"] = _TOKENIZER_CLASSES[cls]
    extra = out.get("extra_special_tokens")
    if isinstance(extra, list):
        del out["extra_special_tokens"]
        if extra:
            out.setdefault("additional_special_tokens", extra)
    return out


def _rewrite_json(path: Path, transform) -> None:
    """Apply ``transform`` to a JSON file; the file is rewritten only when the content changes."""
    data = json.loads(path.read_text(encoding="utf-8"))
    new = transform(data)
    if new != data:
        path.write_text(json.dumps(new, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def source_file(source: str, name: str) -> Path | None:
    """File ``name`` of the source checkpoint: a local folder's, or the hub cache's copy of a hub id
    (present after loading); None when the checkpoint has no such file."""
    folder = Path(source)
    if folder.is_dir():
        f = folder / name
        return f if f.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    found = try_to_load_from_cache(source, name)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def make_readable(folder: Path) -> None:
    """Every file in ``folder`` gets mode ``0666 & ~umask`` (0644 with the usual umask 022); some writers
    (safetensors through a temporary file) leave 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for f in folder.rglob("*"):
        if f.is_file():
            f.chmod(0o666 & ~umask)


def copy_source_files(source: str | None, out: Path) -> list[str]:
    """Copy the source checkpoint's configuration and tokenizer files into ``out`` (overwriting what a
    ``save_pretrained`` wrote there) and make them portable. Returns the names copied; empty when the
    source has no ``config.json`` (a GGUF file: then the files ``save_pretrained`` wrote are kept and
    only made portable)."""
    copied = []
    if source is not None and source_file(source, "config.json") is not None:
        for name in SOURCE_FILES:
            f = source_file(source, name)
            if f is not None:
                shutil.copyfile(f, out / name)
                copied.append(name)
    if (out / "config.json").is_file():
        _rewrite_json(out / "config.json", portable_config)
    if (out / "tokenizer_config.json").is_file():
        _rewrite_json(out / "tokenizer_config.json", portable_tokenizer_config)
    return copied


def set_config_dtype(out: Path, dtype: str) -> None:
    """Record the dtype the weights were written in (both spellings), when it differs from the source's."""

    def transform(config):
        if config.get("dtype", dtype) == dtype and config.get("torch_dtype", dtype) == dtype:
            return config
        return {**config, "dtype": dtype, "torch_dtype": dtype}

    _rewrite_json(out / "config.json", transform)
