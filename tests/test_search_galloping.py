"""The galloping stage-2 search: the linear walk's answer on monotone curves (pure walks over an oracle, and
the committed masks' recorded curves), a fallback where the measured curve is not monotone, and on the
embedded model a valid critical set equal to the linear one in fewer batched forwards."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from lm_eval_achilles.defaults import PROBE_TEXT
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.perplexity import LN10, delta, encode, mean_nll
from lm_eval_achilles.locator.search import doublings, galloping_walk, greedy_search, linear_walk
from lm_eval_achilles.mask.mask_file import load_mask
from lm_eval_achilles.mask.masking import masked

ROOT = Path(__file__).resolve().parents[1]


def oracle(values, batch_size, calls):
    """measure(indices) over a list of Delta values (index s -> values[s - 1]); counts calls, checks the batch."""

    def measure(indices):
        assert len(indices) <= batch_size and len(set(indices)) == len(indices)
        calls.append(list(indices))
        return [values[i - 1] for i in indices]

    return measure


def walks(values, epsilon, batch_size):
    lin_calls, gal_calls = [], []
    ident = lambda v: v  # noqa: E731  (the values are Deltas already)
    lin = linear_walk(oracle(values, batch_size, lin_calls), len(values), ident, epsilon, batch_size)
    gal = galloping_walk(oracle(values, batch_size, gal_calls), len(values), ident, epsilon, batch_size)
    return lin, gal, lin_calls, gal_calls


def monotone_curve(rng, count):
    out, v = [], rng.uniform(-0.05, 0.05)
    for _ in range(count):
        v += rng.expovariate(1.0) * rng.choice([0.0, 0.001, 0.01, 0.1, 1.0])
        out.append(v)
    return out


def test_galloping_equals_the_linear_walk_on_random_monotone_curves():
    rng = random.Random(1)
    found_any = missed_any = 0
    for _ in range(2000):
        values = monotone_curve(rng, rng.randint(1, 1100))
        epsilon = rng.choice([0.5, 1.0, 3.0, 20.0, 1e9])
        batch = rng.randint(1, 10)
        lin, gal, lc, gc = walks(values, epsilon, batch)
        assert gal.found == lin.found, (len(values), epsilon, batch)
        assert gal.monotone is True and gal.note == ""
        if lin.found is not None:
            found_any += 1
            assert values[gal.found - 1] >= epsilon
            assert gal.found == 1 or (gal.found - 1) in gal.points  # the prefix before was measured below epsilon
        else:
            missed_any += 1
            assert len(values) in gal.points  # "none" rests on the cap's own point
        if batch >= 4 and (lin.found is None or lin.found > 4 * batch):  # past the first few batches
            assert len(gc) <= len(lc)
    assert found_any > 100 and missed_any > 100  # both outcomes were exercised


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 9, 1000])
@pytest.mark.parametrize("cross", [1, 2, 3, 7, 8, 9, 513, 999, 1000, None])
@pytest.mark.parametrize("batch", [1, 2, 8])
def test_edge_cases_of_size_cap_and_batch(count, cross, batch):
    """A step curve (Delta 0 then 2 from ``cross`` on): every crossing position, a cap at a power of two
    and not, batch size 1, and no crossing within the cap (cross beyond count)."""
    values = [2.0 if cross is not None and i >= cross else 0.0 for i in range(1, count + 1)]
    lin, gal, _, gc = walks(values, 1.0, batch)
    assert gal.found == lin.found == (cross if cross is not None and cross <= count else None)
    if count == 1000 and batch == 8:
        assert len(gc) <= 5  # log-many forwards, not 125


def test_doublings_end_at_the_cap():
    assert doublings(1) == [1]
    assert doublings(8) == [1, 2, 4, 8]
    assert doublings(1000) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]


def test_ranking_exhausted_and_step_in_greedy_search(tiny_llama):
    """Through the model: a ranking shorter than max_steps x step (exhausted) and step > 1 give the same
    outcome and stopping reason in both searches."""
    import torch

    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.mask.mask_file import Neuron

    ids = torch.tensor([[5, 9, 13, 2, 40, 33, 7, 1]])
    ranking = [Neuron(m, c) for m in candidate_modules(tiny_llama, "*down_proj") for c in range(16)]
    for step, epsilon, max_steps in [(1, 1e-6, 1000), (3, 1e-6, 1000), (2, 50.0, 1000), (1, 50.0, 5)]:
        res = {
            s: greedy_search(tiny_llama, ids, ranking, epsilon, step, max_steps, progress=False, search=s)
            for s in ("linear", "galloping")
        }
        lin, gal = res["linear"], res["galloping"]
        assert (gal.size, gal.neurons, gal.stopping_reason) == (lin.size, lin.neurons, lin.stopping_reason)
        assert [n for n, _ in gal.curve] == sorted(n for n, _ in gal.curve)  # every point kept, by n
        assert dict(gal.curve).items() <= dict(lin.curve).items() or gal.monotone is False or lin.size == 0
    assert lin.stopping_reason == "max_steps_reached" and lin.size == 0


def test_non_monotone_curve_is_detected_and_falls_back():
    """A spike that crosses at 5 only, between doublings 4 and 8 which do not cross but dip: the points
    measured fall from 0.9 to 0.1, so the search walks linearly and finds 5, as the paper would."""
    values = [0.1, 0.2, 0.3, 0.9, 1.5, 0.6, 0.2, 0.1] + [0.1] * 100 + [2.0] * 20
    lin, gal, _, _ = walks(values, 1.0, 8)
    assert lin.found == 5
    assert gal.found == 5 and gal.monotone is False
    assert "not monotone" in gal.note
    # a crossing, then a longer prefix below epsilon: detected as well
    values = [0.0] * 3 + [1.5] + [0.5] * 4 + [2.0] * 10
    lin, gal, _, _ = walks(values, 1.0, 2)
    assert gal.found == lin.found == 4
    assert gal.monotone is False and "after prefix 4 crossed" in gal.note
    # ups and downs above epsilon past the crossing are the phase transition's: no fallback
    values = [0.0] * 5 + [3.0, 2.5, 4.0, 2.8] * 5
    lin, gal, _, _ = walks(values, 1.0, 8)
    assert gal.found == lin.found == 6 and gal.monotone is True


COMMITTED = sorted(
    p for p in (ROOT / "results").rglob("*.json") if p.name.startswith("mask") or p.parent.name == "masks"
)


@pytest.mark.parametrize("path", COMMITTED, ids=[str(p.relative_to(ROOT)) for p in COMMITTED])
def test_galloping_on_the_committed_masks_recorded_curves(path):
    """The recorded curve (n -> PPL) is the oracle. It holds the linear walk's points up to the batch that
    crossed, so galloping's points beyond it are unknown: they are filled both ways (all crossing, all at
    the baseline), and the answer must be the recorded one either way; every point it needs at or below the
    recorded crossing is a recorded one."""
    mask = load_mask(path)
    cfg = LocatorConfig.from_record(mask.locator)
    curve = {int(n): math.log(p) for n, p in mask.critical.curve}
    base = curve[0]
    assert mask.critical.size > 0 and cfg.step == 1
    count = cfg.max_steps
    for fill in (math.inf, base):
        asked = []

        def measure(indices):
            asked.extend(indices)
            return [curve.get(i, fill) for i in indices]

        walk = galloping_walk(measure, count, lambda v: delta(v, base), cfg.epsilon, cfg.search_batch_size or 8)
        assert walk.found == mask.critical.size, (fill, walk.note)
        assert all(i in curve for i in asked if i <= mask.critical.size)


def test_galloping_on_the_embedded_model_is_valid_and_cheaper(embedded):
    """A ranking whose critical prefix is long: 39 of the least-ranked channels, then the critical neuron.
    Both searches find prefix 40; galloping in fewer batched forwards; the set crosses epsilon when
    measured independently (hooks on the whole model, one row)."""
    mask = load_mask(ROOT / "results/smollm2-135m-instruct/mask.json")
    critical = mask.neurons[0]
    ranking = [r.neuron for r in mask.ranking[-39:]] + [critical] + [r.neuron for r in mask.ranking[-100:-39]]
    ids = encode(embedded.tokenizer, PROBE_TEXT)
    res = {
        s: greedy_search(embedded.model, ids, ranking, 1.0, 1, 100, progress=False, search=s)
        for s in ("linear", "galloping")
    }
    lin, gal = res["linear"], res["galloping"]
    assert lin.size == 40 and (gal.size, gal.neurons) == (lin.size, lin.neurons)
    assert gal.monotone is True
    assert gal.forward_passes < lin.forward_passes
    base = float(mean_nll(embedded.model, ids)[0])
    with masked(embedded.model, gal.neurons):
        hit = float(mean_nll(embedded.model, ids)[0])
    assert delta(hit, base) >= 1.0
    assert delta(hit, base) == pytest.approx(gal.delta, abs=1e-3)
    with masked(embedded.model, gal.neurons[:-1]):  # the prefix before does not cross
        assert (float(mean_nll(embedded.model, ids)[0]) - base) / LN10 < 1.0


def test_search_setting_is_recorded_and_old_files_read_as_linear():
    assert LocatorConfig().search == "galloping"
    assert LocatorConfig().to_record()["search"] == "galloping"
    assert LocatorConfig.from_record({"method": "perturbation"}).search == "linear"  # written before the field
    assert LocatorConfig.from_record(LocatorConfig(search="galloping").to_record()).search == "galloping"
    assert LocatorConfig.from_model_args({"locate_search": "linear"}).search == "linear"


# ---- --samples auto's looks: a bound, and prefixes the memo already knows --------------------------------


def test_a_bounded_look_measures_the_bound_first_and_stops_there_when_it_does_not_cross():
    values = [0.0] * 20 + [2.0] * 80  # crosses at 21
    calls: list = []
    ident = lambda v: v  # noqa: E731
    walk = galloping_walk(oracle(values, 1, calls), 100, ident, 1.0, 1, exhaustive=False, at_most=13)
    assert walk.found is None and calls == [[13]] and "at or before prefix 13" in walk.note
    calls.clear()  # the bound crosses and the prefix before it does not: the bound is the answer, 2 rows
    walk = galloping_walk(oracle(values, 1, calls), 100, ident, 1.0, 1, exhaustive=False, at_most=21)
    assert walk.found == 21 and calls == [[21], [20]]
    calls.clear()  # a shorter crossing: bisection below the bound finds the linear walk's answer
    walk = galloping_walk(oracle(values, 1, calls), 100, ident, 1.0, 1, exhaustive=False, at_most=60)
    assert walk.found == 21 == linear_walk(oracle(values, 8, []), 100, ident, 1.0, 8).found


def test_prefixes_known_to_the_memo_come_free_and_a_known_crossing_skips_the_doublings():
    values = [0.1 * i for i in range(1, 101)]  # crosses 1.0 at 10
    ident = lambda v: v  # noqa: E731
    known = {9, 10}  # a previous search on this ranking measured these
    calls: list = []

    def measure(indices):
        new = [i for i in indices if i not in known]
        if new:
            calls.append(new)
        return [values[i - 1] for i in indices]

    walk = galloping_walk(measure, 100, ident, 1.0, 8, key=lambda i: i, known=lambda k: k in known)
    assert walk.found == 10 and calls == []  # no forward: 9 below, 10 above, read from the memo
