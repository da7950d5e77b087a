"""Paired tests for original-vs-masked comparisons (pure functions, no model).

Both runs score the *same* documents, so the tests are paired:

- 0/1 metrics (accuracy, exact match, meaningless_rate, ...): the **exact McNemar test**. Only the
  discordant documents carry information: ``b`` = right before masking and wrong after, ``c`` = the
  reverse. Under H0 (masking changes nothing) each discordant document is a fair coin, so the two-sided
  p-value is ``min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])`` (computed exactly with integers).
- any other per-document score (perplexity, rates on a scale): the **paired bootstrap** of the mean
  difference (masked - original): resample documents with replacement, ``iters`` times, seeded, and take
  the percentile interval. A two-sided bootstrap p-value (twice the smaller tail mass at 0) is given too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from lm_eval_achilles.errors import AchillesError


@dataclass
class PairedTest:
    """Result of one paired test; ``to_json`` drops the fields that do not apply."""

    name: str  # "mcnemar-exact" | "paired-bootstrap" | "none"
    n: int
    p_value: float | None = None
    # McNemar
    b: int | None = None  # original 1, masked 0
    c: int | None = None  # original 0, masked 1
    # bootstrap
    ci_low: float | None = None
    ci_high: float | None = None
    level: float | None = None
    iters: int | None = None
    seed: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v not in (None, "", {})}
        return d


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c``.

    ``p = min(1, 2 * sum_{k <= min(b, c)} C(n, k) / 2**n)`` with ``n = b + c``; ``n = 0`` gives 1.
    Exact rational arithmetic, so large ``n`` neither underflows nor loses precision before the end.
    """
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise AchillesError(f"McNemar counts must be non-negative integers, got {name}={v!r}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def discordant(original: Sequence[float], masked: Sequence[float]) -> tuple[int, int]:
    """``(b, c)``: documents scored 1 originally and 0 masked, and the reverse."""
    a = _as_array(original, "original")
    m = _as_array(masked, "masked")
    _same_length(a, m)
    if not (is_binary(a) and is_binary(m)):
        raise AchillesError("McNemar needs 0/1 scores in both runs")
    return int(np.sum((a == 1) & (m == 0))), int(np.sum((a == 0) & (m == 1)))


def mcnemar_test(original: Sequence[float], masked: Sequence[float]) -> PairedTest:
    b, c = discordant(original, masked)
    return PairedTest(name="mcnemar-exact", n=len(original), p_value=mcnemar_exact(b, c), b=b, c=c)


def is_binary(values: Sequence[Any]) -> bool:
    """True when every value is 0 or 1 (bools included) - the metrics McNemar applies to."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return False
    return arr.ndim == 1 and arr.size > 0 and bool(np.all((arr == 0) | (arr == 1)))


def paired_bootstrap(
    original: Sequence[float],
    masked: Sequence[float],
    iters: int = 10_000,
    seed: int = 1234,
    level: float = 0.95,
    statistic: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> PairedTest:
    """Percentile CI of ``statistic(masked_sample) - statistic(original_sample)`` over documents
    resampled with replacement (the same indices for both runs: that is what makes it paired).

    ``statistic`` defaults to the mean, computed vectorised. Any other aggregate (e.g. a weighted
    perplexity over ``(loglikelihood, weight)`` pairs) can be passed as a function of an index array
    and the run (``statistic(idx, which)`` with ``which`` 0 = original, 1 = masked), in which case
    ``original``/``masked`` may hold arbitrary per-document items.
    """
    if iters < 1:
        raise AchillesError(f"bootstrap iterations must be >= 1, got {iters}")
    if not 0 < level < 1:
        raise AchillesError(f"confidence level must be in (0, 1), got {level}")
    n = len(original)
    if n != len(masked):
        raise AchillesError(f"paired samples differ in length: {n} original vs {len(masked)} masked")
    if n == 0:
        raise AchillesError("no paired documents to bootstrap")
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN on purpose (see _percentile_test)
        diffs, observed = _replicates(original, masked, n, iters, rng, statistic)
    return _percentile_test(diffs, observed, n, iters, seed, level)


def _replicates(original, masked, n: int, iters: int, rng, statistic) -> tuple[np.ndarray, float]:
    """``iters`` bootstrap replicates of the difference, and the observed difference."""
    if statistic is None:
        a = _as_array(original, "original")
        m = _as_array(masked, "masked")
        d = m - a
        observed = float(d.mean())
        diffs = np.empty(iters)
        chunk = max(1, min(iters, 2_000_000 // max(n, 1)))
        for start in range(0, iters, chunk):
            k = min(chunk, iters - start)
            idx = rng.integers(0, n, size=(k, n))
            diffs[start : start + k] = d[idx].mean(axis=1)
    else:
        full = np.arange(n)
        observed = float(statistic(full, 1) - statistic(full, 0))
        diffs = np.empty(iters)
        for i in range(iters):
            idx = rng.integers(0, n, size=n)
            diffs[i] = statistic(idx, 1) - statistic(idx, 0)
    return diffs, observed


def _percentile_test(diffs: np.ndarray, observed: float, n: int, iters: int, seed: int, level: float) -> PairedTest:
    """The percentile interval and two-sided p-value of bootstrap replicates ``diffs``.

    Non-finite values are never dropped (dropping them turned one infinite perplexity into "no change",
    CI [0, 0], p = 1): an infinite replicate counts as an infinitely large difference, so the interval
    reaches inf and the p-value reflects how often the infinite document was drawn; any NaN replicate
    (a NaN document, or inf - inf) means there is no interval at all, and the note says so."""
    base = dict(name="paired-bootstrap", n=n, iters=iters, seed=seed, level=level, extra={"difference": observed})
    nan = int(np.isnan(diffs).sum())
    if nan or math.isnan(observed):
        return PairedTest(
            **base, note=f"no interval: the difference is NaN ({nan} of {iters} bootstrap replicates are NaN)"
        )
    alpha = 1.0 - level
    finite = bool(np.isfinite(diffs).all())
    # without interpolation when a replicate is infinite (interpolating between inf and a number gives nan)
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2], method="linear" if finite else "inverted_cdf")
    p = 2.0 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0)))
    note = "" if finite else f"{int((~np.isfinite(diffs)).sum())} of {iters} bootstrap replicates are infinite"
    return PairedTest(**base, p_value=min(1.0, p), ci_low=float(lo), ci_high=float(hi), note=note)


def _as_array(values: Sequence[Any], what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise AchillesError(f"{what} scores are not numbers") from exc
    if arr.ndim != 1:
        raise AchillesError(f"{what} scores must be one number per document")
    return arr


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise AchillesError(f"paired samples differ in length: {a.size} vs {b.size}")
