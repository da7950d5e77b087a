"""Writing a masked model as GGUF (``achilles export --format gguf``), for llama.cpp, llama-cpp-python and
Ollama: the source GGUF file copied, with the mask folded into its tensors in place (docs/cli.md).

What is folded, and how (``W`` a tensor of ``[rows, in]`` stored row-major, each row a whole number of
quantisation blocks):

- a Linear module (q/k/v/o, gate/up/down projections): row ``c`` of its weight (and bias entry ``c``);
  the ``act_fn`` of a gated MLP: row ``c`` of ``ffn_up``;
- a norm: entry ``c`` of its gain (GGUF stores the full gain, ``1 + w`` for Gemma, so it is scaled by β).

β = 0 writes zero bytes over the row, which decodes to exactly 0 in every GGUF type (float, and every
block quantisation, whose scales then are 0). β ≠ 0 is exact only for float tensors (F32, F16, BF16);
scaling a quantised row would need requantisation and is refused. llama.cpp stores the rows of
``attn_q``/``attn_k`` of the ``llama`` architecture permuted (rotary pairs interleaved), so row ``c``
is mapped through that permutation; for other architectures q/k masks are refused. Tied output
weights (no ``output`` tensor: the embedding is the output layer) and embeddings are refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from lm_eval_achilles.errors import AchillesError

_FLOAT_TYPES = {"F32": np.float32, "F16": np.float16}


def _arch(reader) -> str:
    field = reader.fields.get("general.architecture")
    if field is None:
        raise AchillesError("the GGUF file has no general.architecture")
    return bytes(field.parts[-1]).decode()


def _llama_qk_row(c: int, n_heads: int, rows: int) -> int:
    """The GGUF row of Hugging Face row ``c`` of a llama ``attn_q``/``attn_k`` weight: llama.cpp's converter
    reorders each head's rows ``(2, head_dim/2)`` into ``(head_dim/2, 2)``."""
    head_dim = rows // n_heads
    half = head_dim // 2
    h, rem = divmod(c, head_dim)
    i, j = divmod(rem, half)
    return h * head_dim + 2 * j + i


def _targets(skeleton, neurons) -> dict[str, list[int]]:
    """Hugging Face module whose rows (or norm entries) are written -> channels; refuses what GGUF folding cannot do."""
    from torch import nn

    from lm_eval_achilles.mask.hooks import resolve_modules
    from lm_eval_achilles.mask.masking import _gated_mlp_parent, _is_norm, group_channels

    groups = group_channels(neurons)
    out: dict[str, list[int]] = {}
    for name, module in resolve_modules(skeleton, groups).items():
        if _gated_mlp_parent(skeleton, name, module) is not None:
            target = name.rpartition(".")[0] + ".up_proj"
        elif isinstance(module, nn.Linear) or _is_norm(module):
            target = name
        else:
            raise AchillesError(
                f"cannot fold a mask into {name!r} ({type(module).__name__}) in GGUF: only Linear layers, "
                "norms and the act_fn of a gated MLP; use --format hf or apply=hooks"
            )
        out[target] = out.get(target, []) + groups[name]
    return out


def gguf_export(source: Path, out_file: Path, skeleton, neurons, scale: float) -> list[str]:
    """Copy ``source`` to ``out_file`` with ``neurons`` folded in (see the module docstring); every
    refusal happens before anything is written. Returns the GGUF tensor names changed."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = _arch(reader)
    names = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in names:
        raise AchillesError(f"GGUF architecture {arch!r} is unknown to the gguf package")
    config = skeleton.config
    tmap = gguf.get_tensor_name_map(names[arch], config.num_hidden_layers)
    tensors = {t.name: t for t in reader.tensors}
    writes = []  # (tensor, rows)
    for target, channels in _targets(skeleton, neurons).items():
        base = tmap.get_name(target)
        if base is None or f"{base}.weight" not in tensors:
            tied = target == "lm_head" and "output.weight" not in tensors
            raise AchillesError(
                f"cannot fold a mask into {target!r} in GGUF: "
                + ("the output layer is tied to the embedding" if tied else "no matching GGUF tensor")
            )
        rows = list(channels)
        if base.endswith((".attn_q", ".attn_k")):
            if arch != "llama":
                raise AchillesError(f"masking {target!r} in a GGUF of architecture {arch!r} is not supported")
            heads = config.num_attention_heads if base.endswith(".attn_q") else config.num_key_value_heads
            n_rows = int(np.prod(tensors[f"{base}.weight"].shape[1:]))
            rows = [_llama_qk_row(c, heads, n_rows) for c in channels]
        for suffix in (".weight", ".bias"):
            t = tensors.get(base + suffix)
            if t is None:
                continue
            type_name = t.tensor_type.name
            if scale != 0.0 and type_name not in _FLOAT_TYPES:
                raise AchillesError(
                    f"GGUF tensor {t.name} is {type_name}: scaling its rows by beta={scale} would need "
                    "requantisation; only beta = 0 (zeroed blocks) is exact; use --format hf"
                )
            writes.append((t, rows))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_file)
    with open(out_file, "r+b") as f:
        for t, rows in writes:
            n_rows = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else int(t.shape[0])  # 1-D: one row per entry
            row_bytes = int(t.n_bytes) // n_rows
            for r in rows:
                f.seek(int(t.data_offset) + r * row_bytes)
                if scale == 0.0:
                    f.write(bytes(row_bytes))
                else:
                    dtype = _FLOAT_TYPES[t.tensor_type.name]
                    value = np.frombuffer(f.read(row_bytes), dtype=dtype).astype(np.float32) * scale
                    f.seek(int(t.data_offset) + r * row_bytes)
                    f.write(value.astype(dtype).tobytes())
    return sorted({t.name for t, _ in writes})
