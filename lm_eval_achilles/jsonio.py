"""JSON in and out: non-finite numbers kept readable, files written atomically.

JSON has no inf/nan. This package stores them as the strings ``"inf"``, ``"-inf"``, ``"nan"``, which
``float()`` reads back, so a collapsed model's infinite perplexity is never lost or turned into null.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats as strings, tuples as lists, tensors as lists and objects with a
    ``to_json()`` (or ``module``/``channel`` neurons) as dicts: ready for ``json.dumps``."""
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # torch tensors, numpy arrays and scalars
        return json_safe(x.tolist())
    if hasattr(x, "module") and hasattr(x, "channel"):
        return {"module": x.module, "channel": x.channel}
    return x


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so a reader
    never sees half a file and an interrupted write leaves the old file intact. The file gets ordinary
    permissions (as ``open()`` would give it), not the 0600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int = 1) -> Path:
    """:func:`json_safe` ``data`` written atomically as indented JSON with a final newline."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=indent, ensure_ascii=False) + "\n")
