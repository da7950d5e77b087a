"""Paired tests against known values (exact binomial tails worked out by hand / published tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lm_eval_achilles.comparison.stats import discordant, is_binary, mcnemar_exact, mcnemar_test, paired_bootstrap
from lm_eval_achilles.errors import AchillesError


@pytest.mark.parametrize(
    "b,c,expected",
    [
        (0, 0, 1.0),  # no discordant pairs: no evidence
        (5, 5, 1.0),  # balanced: capped at 1
        (0, 5, 2 / 32),  # 2 * (1/2)^5
        (2, 8, 2 * (1 + 10 + 45) / 1024),  # = 0.109375
        (8, 2, 0.109375),  # symmetric in b and c
        (1, 10, 2 * (1 + 11) / 2048),
        (40, 60, 0.05688793364098089),  # 2 * BinomCDF(40; 100, 0.5)
        (123, 177, 0.002161138741240763),
    ],
)
def test_mcnemar_exact_known_values(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=0)


def test_mcnemar_exact_large_counts_do_not_underflow():
    p = mcnemar_exact(0, 2000)
    assert 0 < p < 1e-300 or p == 0.0  # 2 / 2**2000 underflows a double; it must not raise
    assert mcnemar_exact(1000, 1000) == 1.0


@pytest.mark.parametrize("bad", [(-1, 3), (1.5, 2), (True, 2)])
def test_mcnemar_rejects_bad_counts(bad):
    with pytest.raises(AchillesError):
        mcnemar_exact(*bad)


def test_mcnemar_test_from_documents():
    original = [1, 1, 1, 1, 0, 0, 1, 0, 1, 1]
    masked = [0, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    assert discordant(original, masked) == (6, 1)
    t = mcnemar_test(original, masked)
    assert (t.name, t.n, t.b, t.c) == ("mcnemar-exact", 10, 6, 1)
    assert t.p_value == pytest.approx(2 * (1 + 7) / 128)
    with pytest.raises(AchillesError):
        discordant([1, 0.5], [1, 0])


def test_is_binary():
    assert is_binary([0, 1, 1.0, True, False])
    assert not is_binary([0, 0.5])
    assert not is_binary([])
    assert not is_binary([[1, 2]])
    assert not is_binary(["a"])


def test_bootstrap_constant_difference_gives_degenerate_interval():
    a = np.arange(20.0)
    t = paired_bootstrap(a, a + 2.5, iters=500, seed=0)
    assert t.extra["difference"] == pytest.approx(2.5)
    assert t.ci_low == pytest.approx(2.5) and t.ci_high == pytest.approx(2.5)
    assert t.p_value == 0.0


def test_bootstrap_matches_normal_theory_and_is_seeded():
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    m = a + 0.3 + rng.normal(size=400)
    d = m - a
    se = d.std(ddof=1) / math.sqrt(len(d))
    t = paired_bootstrap(a, m, iters=5000, seed=7)
    assert t.extra["difference"] == pytest.approx(d.mean())
    # percentile interval ~ mean +- 1.96 se for n = 400
    assert t.ci_low == pytest.approx(d.mean() - 1.96 * se, abs=0.15 * se * 1.96)
    assert t.ci_high == pytest.approx(d.mean() + 1.96 * se, abs=0.15 * se * 1.96)
    assert t.p_value < 0.001
    again = paired_bootstrap(a, m, iters=5000, seed=7)
    assert (again.ci_low, again.ci_high) == (t.ci_low, t.ci_high)
    other = paired_bootstrap(a, m, iters=5000, seed=8)
    assert (other.ci_low, other.ci_high) != (t.ci_low, t.ci_high)


def test_bootstrap_no_effect_interval_covers_zero():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    m = a + rng.normal(scale=0.1, size=200) - 0.0
    m = m - (m - a).mean()  # exact zero mean difference
    t = paired_bootstrap(a, m, iters=2000, seed=3)
    assert t.ci_low < 0 < t.ci_high
    assert t.p_value > 0.5


def test_bootstrap_custom_statistic_ratio_of_sums():
    # weighted statistic over (value, weight) items: sum(v) / sum(w)
    orig = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    mask = [(2.0, 1.0), (4.0, 2.0), (6.0, 3.0)]

    def stat(idx, which):
        items = np.asarray(mask if which else orig)[idx]
        return items[:, 0].sum() / items[:, 1].sum()

    t = paired_bootstrap(orig, mask, iters=200, seed=0, statistic=stat)
    assert t.extra["difference"] == pytest.approx(1.0)
    assert t.ci_low == pytest.approx(1.0) and t.ci_high == pytest.approx(1.0)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(AchillesError):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(AchillesError):
        paired_bootstrap([], [])
    with pytest.raises(AchillesError):
        paired_bootstrap([1, 2], [1, 2], level=1.5)


def test_bootstrap_infinite_difference_is_reported_not_dropped():
    """One infinite masked score among ten: the replicates that draw it are infinite. Dropping them
    (as before) gave CI [0, 0] and p = 1, i.e. "no change"."""
    t = paired_bootstrap([1.0] * 10, [1.0] * 9 + [math.inf], iters=2000, seed=0)
    assert t.extra["difference"] == math.inf
    assert t.ci_high == math.inf and t.ci_low == 0.0
    # P(doc 9 never drawn in 10 draws) = 0.9**10 = 0.35: about 35 % of replicates are 0, 65 % infinite
    assert t.p_value == pytest.approx(2 * 0.9**10, abs=0.05)
    assert "bootstrap replicates are infinite" in t.note


def test_bootstrap_nan_gives_no_interval_and_says_why():
    t = paired_bootstrap([1.0] * 10, [1.0] * 9 + [math.nan], iters=500, seed=0)
    assert t.p_value is None and t.ci_low is None and t.ci_high is None
    assert math.isnan(t.extra["difference"])
    assert "NaN" in t.note


def test_bootstrap_custom_statistic_keeps_infinite_replicates():
    ll_o = np.array([-10.0, -12.0, -11.0, -9.0])
    ll_m = np.array([-10.0, -math.inf, -11.0, -9.0])

    def stat(idx, which):
        return -(ll_m if which else ll_o)[idx].mean()

    t = paired_bootstrap(list(range(4)), list(range(4)), iters=500, seed=1, statistic=stat)
    assert t.extra["difference"] == math.inf and t.ci_high == math.inf and t.p_value is not None
