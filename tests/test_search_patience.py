"""``--patience``: an early stop for a stage-2 walk that does not cross epsilon (a model with no critical
set). Pure walks over an oracle, the check rule that must not read the galloping cap as "tried", and the
embedded model with its critical neuron masked: a robust model, where the walk stops after a few forwards
instead of walking all 1000 prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lm_eval_achilles.comparison.baseline import tried_size
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.locate import locate
from lm_eval_achilles.locator.search import galloping_walk, linear_walk, stalled
from lm_eval_achilles.mask.mask_file import load_mask, save_mask
from lm_eval_achilles.mask.masking import masked

ROOT = Path(__file__).resolve().parents[1]
IDENT = lambda v: v  # noqa: E731  (the oracle's values are Deltas already)


def oracle(values, calls):
    def measure(indices):
        calls.append(list(indices))
        return [values[i - 1] for i in indices]

    return measure


def test_stalled_counts_prefixes_since_the_last_new_highest_delta():
    assert not stalled([0.1, 0.5, 0.2], 2)  # only 2 values: nothing before the last 2 to compare with
    assert stalled([0.1, 0.5, 0.2, 0.3], 2)  # 0.2 and 0.3 are not above 0.5
    assert not stalled([0.1, 0.5, 0.2, 0.6], 2)  # 0.6 is a new highest: the count starts again
    assert stalled([0.5, 0.5, 0.5], 2)  # equal is not a rise


def test_linear_walk_with_patience_stops_on_a_plateau_and_without_it_walks_all():
    values = [0.4, 0.6] + [0.3] * 998  # rises to 0.6 at prefix 2, then never again, never crosses 1
    calls: list = []
    walk = linear_walk(oracle(values, calls), 1000, IDENT, 1.0, batch_size=8, patience=20)
    assert walk.found is None and walk.stopped == "patience"
    assert max(walk.points) == 24  # the batch holding prefix 22 (2 + 20 without a rise), whole
    assert len(calls) == 3
    calls.clear()
    full = linear_walk(oracle(values, calls), 1000, IDENT, 1.0, batch_size=8)
    assert full.found is None and full.stopped == "" and len(calls) == 125


def test_patience_never_stops_a_walk_that_still_rises_and_finds_the_crossing():
    values = [i / 500 for i in range(1, 1001)]  # rises slowly at every prefix, crosses at 500
    walk = linear_walk(oracle(values, []), 1000, IDENT, 1.0, batch_size=8, patience=5)
    assert walk.found == 500 and walk.stopped == ""


def test_galloping_with_patience_on_a_non_monotone_curve_with_no_crossing():
    values = [0.4, 0.6, 0.1, -0.5] + [0.2] * 996
    calls: list = []
    walk = galloping_walk(oracle(values, calls), 1000, IDENT, 1.0, batch_size=8, patience=30)
    assert walk.found is None and walk.monotone is False and walk.stopped == "patience"
    # the prefixes after the fallback's batches: 1..12, ..21, ..30, ..38 (the first with 30 after prefix 2)
    assert "the linear walk over 1..38 decided, stopped there by --patience 30" in walk.note
    # below a crossing the walk runs to it whatever the patience: the crossing at 600 is kept
    values = [0.4, 0.6, 0.1, -0.5] + [0.2] * 595 + [2.0] * 401
    walk = galloping_walk(oracle(values, []), 1000, IDENT, 1.0, batch_size=8, patience=30)
    assert walk.found == 600 and walk.stopped == ""


def test_a_look_that_is_not_exhaustive_stops_after_the_doublings():
    """``--samples auto``'s looks: no measured prefix crossed, so no linear walk (2 forwards, not 125)."""
    values = [0.4, 0.6, 0.1, -0.5] + [0.2] * 996
    calls: list = []
    walk = galloping_walk(oracle(values, calls), 1000, IDENT, 1.0, batch_size=8, exhaustive=False)
    assert (
        walk.found is None and len(calls) == 2 and sorted(walk.points) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    )


@pytest.fixture(scope="module")
def robust(embedded):
    """The embedded model with its critical neuron masked has no critical set within 1000 steps (measured:
    the best Delta over all 1000 prefixes is 0.72, results/benchmarks/search_galloping_vs_linear_cpu.md)."""
    critical = load_mask(ROOT / "results/smollm2-135m-instruct/mask.json")
    with masked(embedded.model, critical.neurons):
        yield embedded


def test_patience_on_a_robust_model_stops_in_a_few_forwards(robust, tmp_path):
    cfg = LocatorConfig(samples=20, patience=20, progress=False)
    mask = locate(robust, cfg)
    c = mask.critical
    assert c.size == 0 and c.stopping_reason == "patience" and c.delta < 1.0
    assert c.forward_passes <= 8  # the doublings (2) and a few prefixes one by one, not 125
    walked = tried_size(mask)
    assert 21 <= walked < 100 and all(n in {int(x) for x, _ in c.curve} for n in range(1, walked + 1))
    assert mask.locator["patience"] == 20
    assert LocatorConfig.from_record(mask.locator).patience == 20

    path = save_mask(mask, tmp_path / "robust.json")
    from lm_eval_achilles.cli import main

    assert main(["check", str(path), "--min-critical-size", str(walked)]) == 0
    # the galloping cap (prefix 1000) was measured too, but a walk stopped early proves nothing beyond it
    assert main(["check", str(path), "--min-critical-size", "1000"]) == 1


def test_patience_is_recorded_only_when_used_and_checked():
    assert "patience" not in LocatorConfig().to_record()
    from lm_eval_achilles.errors import AchillesError

    with pytest.raises(AchillesError, match="patience"):
        LocatorConfig(patience=0)
