"""Checks of user-given values, shared by the CLI, the lm-eval model arguments and the Python API, so one
bad value gets the same one-line :class:`~lm_eval_achilles.errors.AchillesError` whichever way it came in,
before any model is loaded.

Values may arrive as strings (``--model_args``, command lines) or as Python numbers; ``nan``, ``inf`` and
booleans are never accepted where a count or a finite number is meant.

>>> as_int("3", "top_n", minimum=0)
3
>>> as_float("nan", "scale")
Traceback (most recent call last):
...
lm_eval_achilles.errors.AchillesError: scale must be a finite number, got 'nan'
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise AchillesError(f"{name} must be true or false, got {value!r}")


def as_int(value: Any, name: str, minimum: int | None = None) -> int:
    """An integer (``"3"``, ``3``, ``3.0``), at least ``minimum``."""
    if isinstance(value, bool):
        raise AchillesError(f"{name} must be an integer, got {value!r}")
    try:
        out = int(value) if not isinstance(value, str) else int(value.strip())
    except (TypeError, ValueError, OverflowError):
        try:
            f = float(value)
        except (TypeError, ValueError):
            f = math.nan
        if not (math.isfinite(f) and f.is_integer()):
            raise AchillesError(f"{name} must be an integer, got {value!r}") from None
        out = int(f)
    if isinstance(value, float) and value != out:
        raise AchillesError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and out < minimum:
        raise AchillesError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def as_float(value: Any, name: str, minimum: float | None = None, positive: bool = False) -> float:
    """A finite number, at least ``minimum`` (or > 0 with ``positive``)."""
    if isinstance(value, bool):
        raise AchillesError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise AchillesError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise AchillesError(f"{name} must be a finite number, got {value!r}")
    if positive and out <= 0:
        raise AchillesError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and out < minimum:
        raise AchillesError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def as_text(value: Any, name: str) -> str:
    """A text with at least one non-space character (an unset shell variable gives an empty one)."""
    if not isinstance(value, str) or not value.strip():
        raise AchillesError(f"{name} must not be empty, got {value!r}")
    return value


def as_batch_size(value: Any, name: str) -> int | str:
    """lm-eval's batch size: an integer >= 1, ``auto`` or ``auto:N`` (N >= 1)."""
    text = str(value).strip()
    try:
        if text.startswith("auto"):
            if text != "auto":
                as_int(text.removeprefix("auto:"), name, minimum=1)
            return text
        return as_int(text, name, minimum=1)
    except AchillesError:
        raise AchillesError(f"{name} must be an integer >= 1, auto or auto:N, got {value!r}") from None


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTE_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def as_bytes(value: Any, name: str) -> int:
    """A memory size in bytes: ``8GB``, ``512MiB``, ``1.5e9``, ``4000000`` (decimal kB/MB/GB/TB,
    binary KiB/MiB/GiB/TiB), at least 1 byte.

    >>> as_bytes("1.5GB", "max_memory"), as_bytes("2 MiB", "max_memory")
    (1500000000, 2097152)
    """
    if isinstance(value, bool):
        raise AchillesError(f"{name} must be a memory size such as 8GB or 512MiB, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        number, unit = digits, text[len(digits) :]
        try:
            number = float(number)
        except ValueError:
            number = math.nan
    if unit not in _BYTE_UNITS or not math.isfinite(number) or number * _BYTE_UNITS[unit] < 1:
        raise AchillesError(f"{name} must be a memory size such as 8GB or 512MiB, got {value!r}")
    return int(number * _BYTE_UNITS[unit])


def check_output(path, kind: str = "folder", results=(), overwrite: bool = False, flag: str = "--out"):
    """Refuse an output path that cannot be written, *before* any long work, and without writing
    anything: ``kind`` "file" must not be a folder, "folder" must not be a file, and the nearest existing
    ancestor must be a writable folder. A folder that already holds one of ``results`` (paths inside it)
    is refused unless ``overwrite``, saying what to do. Returns the path."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise AchillesError(f"{flag} {p} is a folder; give a file name")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise AchillesError(f"{flag} {p} is an existing file; give a folder")
    ancestor = p.parent if kind == "file" else p
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise AchillesError(f"{flag} {p}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise AchillesError(f"{flag} {p}: folder {ancestor} is not writable")
    if kind == "folder" and p.is_dir() and not overwrite:
        found = [r for r in results if (p / r).exists()]
        if found:
            raise AchillesError(
                f"{flag} {p} already holds results of an earlier run ({', '.join(found)}); "
                f"choose a fresh {flag} folder, remove them, or pass --overwrite to replace them"
            )
    return p
