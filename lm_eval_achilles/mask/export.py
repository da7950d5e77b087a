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


# --------------------------------------------------------------------------------------------------
# streaming export: patch the affected tensors shard by shard


def _weight_files(folder: Path) -> list[str]:
    """The safetensors shards of a local checkpoint folder, from its index or the single file."""
    from lm_eval_achilles.errors import AchillesError

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise AchillesError(f"--streaming needs a local folder with safetensors weights; {folder} has none")


def stream_export(skeleton, folder: Path, out: Path, neurons, scale: float) -> list[str]:
    """Fold ``neurons`` into a copy of the safetensors checkpoint in ``folder`` without loading the model:
    the modules the mask touches are materialised alone (their weights read from the shards) and folded
    by :func:`lm_eval_achilles.mask.masking.fold`, with its checks; then each shard holding a changed
    tensor is read, patched and written (memory: one shard), and every other shard is copied byte for
    byte. Shard names, tensor names and dtypes are the source's. Returns the patched shard names."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.mask.hooks import resolve_modules
    from lm_eval_achilles.mask.masking import _gated_mlp_parent, fold, group_channels

    shards = _weight_files(folder)
    where: dict[str, str] = {}
    for shard in shards:
        with safe_open(folder / shard, framework="pt") as f:
            where.update(dict.fromkeys(f.keys(), shard))
    # the modules to materialise: each masked module, or the gated MLP around a masked activation
    touched = {}
    for name, module in resolve_modules(skeleton, group_channels(neurons)).items():
        parent = _gated_mlp_parent(skeleton, name, module)
        touched[name.rpartition(".")[0] if parent is not None else name] = parent or module
    for prefix, module in touched.items():
        module.to_empty(device="cpu")
        for pname, param in module.named_parameters():
            key = f"{prefix}.{pname}"
            if key not in where:
                raise AchillesError(
                    f"--streaming: tensor {key!r} is not in the checkpoint's shards (its names differ from the "
                    "model's); export without --streaming"
                )
            with safe_open(folder / where[key], framework="pt") as f:
                value = f.get_tensor(key)
            if value.shape != param.shape:
                raise AchillesError(f"--streaming: tensor {key!r} has shape {tuple(value.shape)} in the checkpoint")
            param.data = value
    fold(skeleton, neurons, scale, validate=False)
    changed: dict[str, torch.Tensor] = {}
    for prefix, module in touched.items():
        for pname, param in module.named_parameters():
            changed[f"{prefix}.{pname}"] = param.detach()
    patched = sorted({where[k] for k in changed})
    for shard in shards:
        if shard not in patched:
            shutil.copyfile(folder / shard, out / shard)
            continue
        with safe_open(folder / shard, framework="pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        for k, v in changed.items():
            if where[k] == shard:
                tensors[k] = v.contiguous()
        save_file(tensors, out / shard, metadata=metadata)
        del tensors
    if (folder / "model.safetensors.index.json").is_file():
        shutil.copyfile(folder / "model.safetensors.index.json", out / "model.safetensors.index.json")
    return patched
