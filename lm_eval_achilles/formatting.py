"""Text formatting shared by every table and summary: numbers, markdown tables, dtype names."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any


def fmt(x: Any) -> str:
    """Compact number: 4 significant digits, scientific for very large/small magnitudes.

    ``None`` is ``n/a``, strings pass through, inf/nan are written as such (never hidden)."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4g}"


def signed(x: Any) -> str:
    """:func:`fmt` with an explicit ``+`` on positive numbers (differences)."""
    s = fmt(x)
    return s if s.startswith("-") or s in ("n/a", "0", "nan") else "+" + s


def markdown_table(columns: Sequence[Any], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table. ``align`` holds one of ``"l"``/``"r"`` per column (default left);
    a ``|`` inside a cell is escaped (one that is already escaped, as by :func:`code_cell`, is kept)."""

    def cell(x: Any) -> str:
        return re.sub(r"(?<!\\)\|", r"\\|", str(x))

    rule = ["--:" if a == "r" else "---" for a in (align or ["l"] * len(columns))]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def code_cell(text: Any, limit: int = 160) -> str:
    """Free text (a model's response) as one markdown table cell: one line, shortened, escaped."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit] + " …"
    text = text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return f"`{text}`" if text and "`" not in text else (text or "(empty)")


def dtype_name(dtype: Any) -> str:
    """``torch.float32`` -> ``"float32"``; strings pass through."""
    return str(dtype).replace("torch.", "")


def human_bytes(n: float | None) -> str:
    """``1.5 GB``, ``320 MB``, ``12 kB`` (decimal units, as memory budgets are usually written)."""
    if n is None:
        return "none"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
