"""Aggregations used by the lm-eval tasks (lm-eval calls them with the list of per-document values)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def flat_mean(lists: Iterable[Sequence[float]]) -> float:
    """Mean over the concatenation of per-document lists (IFEval instruction-level accuracy)."""
    flat = [v for item in lists for v in item]
    return sum(flat) / len(flat) if flat else 0.0


def mean_over_flagged(pairs: Iterable[tuple[float, bool]]) -> float:
    """Mean of the values whose flag is true (e.g. over meaningful responses only); 0 if none."""
    kept = [float(v) for v, flag in pairs if flag]
    return sum(kept) / len(kept) if kept else 0.0
