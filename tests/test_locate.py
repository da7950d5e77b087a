"""The paper's two stages: real collapse on the embedded model, determinism, and a slow reference."""

from __future__ import annotations

import json

import pytest
import torch

from lm_eval_achilles.defaults import PROBE_TEXT
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.locate import locate
from lm_eval_achilles.locator.perplexity import delta, encode, mean_nll
from lm_eval_achilles.locator.perturbation import perturbation_scores
from lm_eval_achilles.locator.ranking import rank_scores
from lm_eval_achilles.locator.search import greedy_search
from lm_eval_achilles.mask.mask_file import Neuron, distinct, load_mask, save_mask
from lm_eval_achilles.mask.masking import masked


@pytest.fixture(scope="module")
def located(embedded):
    """The paper's settings: Bookends probe, alpha 5, K 100, seed 42, epsilon 1."""
    return locate(
        embedded, text=PROBE_TEXT, config=LocatorConfig(alpha=5, samples=100, seed=42, progress=False), epsilon=1.0
    )


def test_critical_set_collapses_the_embedded_model(embedded, located, tmp_path):
    c = located.critical
    assert c.stopping_reason == "threshold"
    assert 1 <= len(located.neurons) <= 10  # ultra-sparse, as in the paper
    assert c.delta >= 1.0
    # independently re-measure: masking the set raises PPL on the probe by >= 1 order of magnitude
    ids = encode(embedded.tokenizer, PROBE_TEXT)
    base = float(mean_nll(embedded.model, ids)[0])
    with masked(embedded.model, located.neurons):
        hit = float(mean_nll(embedded.model, ids)[0])
    assert delta(hit, base) >= 1.0
    assert delta(hit, base) == pytest.approx(c.delta, abs=1e-3)
    # the shorter prefix does not cross the threshold (it is the shortest one)
    assert all(delta(torch.log(torch.tensor(p)).item(), base) < 1.0 for n, p in c.curve if 0 < n < c.size)
    # the critical neurons sit in MLP down_proj, as the paper reports
    assert all(n.module.endswith("mlp.down_proj") for n in located.neurons)
    path = save_mask(located, tmp_path / "mask.json")
    again = load_mask(path)
    assert again.neurons == located.neurons
    assert again.ranking[:50] == located.ranking[:50]
    assert [x for pt in again.critical.curve for x in pt] == pytest.approx(
        [x for pt in located.critical.curve for x in pt]
    )


def test_mask_file_records_model_and_parameters(located):
    doc = located.to_json()
    assert doc["format"] == "achilles-mask/1"
    assert doc["model"]["architecture"] == "LlamaForCausalLM"
    assert len(doc["model"]["fingerprint"]) == 16
    assert doc["locator"]["alpha"] == 5 and doc["locator"]["samples"] == 100 and doc["locator"]["seed"] == 42
    assert len(doc["ranking"]) == 10_000
    scores = [r["score"] for r in doc["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert json.loads(json.dumps(doc)) == doc


# ---- stage 1 on a tiny random model against a slow per-element reference ---------------------------


def _reference_scores(model, ids, modules, alpha, samples, seed, batch_size):
    """Plain computation: K separate forwards, per-element Python loops, no streaming."""
    table = dict(model.named_modules())
    acts = {}
    handles = [
        table[m].register_forward_hook(lambda mod, i, o, m=m: acts.__setitem__(m, o[0].detach().clone()))
        for m in modules
    ]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
        clean = dict(acts)
        embeds = model.get_input_embeddings()(ids)
        gen = torch.Generator().manual_seed(seed)
        noises = []
        for start in range(0, samples, batch_size):
            b = min(batch_size, samples - start)
            noises.extend(torch.randn((b, *embeds.shape[1:]), generator=gen))
        totals = {m: [[0.0] * clean[m].shape[1] for _ in range(clean[m].shape[0])] for m in modules}
        for noise in noises:
            model(inputs_embeds=embeds + alpha * noise[None], use_cache=False)
            for m in modules:
                for t in range(clean[m].shape[0]):
                    for c in range(clean[m].shape[1]):
                        totals[m][t][c] += abs(float(acts[m][t, c]) - float(clean[m][t, c]))
    for h in handles:
        h.remove()
    return {m: [[v / samples for v in row] for row in totals[m]] for m in modules}


def test_stage1_matches_per_element_reference(tiny_llama):
    ids = torch.tensor([[3, 17, 42, 8, 25, 11]])
    modules = candidate_modules(tiny_llama)
    fast = perturbation_scores(tiny_llama, ids, modules, alpha=5.0, samples=6, seed=7, batch_size=4, progress=False)
    slow = _reference_scores(tiny_llama, ids, modules, alpha=5.0, samples=6, seed=7, batch_size=4)
    assert sorted(fast) == sorted(modules)  # all candidates produce 3-D outputs here ...
    modules = list(fast)  # ... keyed in forward (hook firing) order, the tie-break order
    for m in modules:
        torch.testing.assert_close(fast[m], torch.tensor(slow[m]), rtol=1e-4, atol=1e-5)
    # ranking: distinct channels by their max over positions, highest first, ties in module order
    expected = sorted(
        ((-max(row[c] for row in slow[m]), i, c) for i, m in enumerate(modules) for c in range(len(slow[m][0]))),
    )
    got = rank_scores(fast, k=25, granularity="channel")
    assert [(r.module, r.channel) for r in got] == [(modules[i], c) for _, i, c in expected[:25]]


def test_position_granularity_counts_like_the_paper(tiny_llama):
    ids = torch.tensor([[3, 17, 42, 8, 25]])
    modules = candidate_modules(tiny_llama)
    scores = perturbation_scores(tiny_llama, ids, modules, samples=4, seed=1, progress=False)
    modules = list(scores)  # forward order
    total = sum(s.numel() for s in scores.values())
    ranking = rank_scores(scores, k=10**9, granularity="position")
    # every (module, position, channel) with importance > 1e-6 is an entry: the paper's neuron count
    assert len(ranking) == sum(int((s > 1e-6).sum()) for s in scores.values())
    assert len(ranking) > 0.9 * total
    assert all(r.position is not None for r in ranking)
    flat = sorted(
        (
            (-float(s[t, c]), i, t, c)
            for i, (m, s) in enumerate(scores.items())
            for t in range(s.shape[0])
            for c in range(s.shape[1])
        )
    )
    assert [(r.module, r.position, r.channel) for r in ranking[:40]] == [(modules[i], t, c) for _, i, t, c in flat[:40]]
    # channels repeat across positions, so a prefix of n entries masks <= n distinct channels
    neurons = [r.neuron for r in ranking]
    result = greedy_search(tiny_llama, ids, neurons, epsilon=1e9, max_steps=30, search="linear", progress=False)
    assert result.stopping_reason == "max_steps_reached"
    assert [n for n, _ in result.curve] == list(range(31))


def test_stage1_is_deterministic_for_a_seed(tiny_llama):
    ids = torch.tensor([[5, 9, 13, 2, 40, 33, 7]])
    modules = candidate_modules(tiny_llama)
    a = perturbation_scores(tiny_llama, ids, modules, samples=10, seed=3, batch_size=4, progress=False)
    b = perturbation_scores(tiny_llama, ids, modules, samples=10, seed=3, batch_size=4, progress=False)
    c = perturbation_scores(tiny_llama, ids, modules, samples=10, seed=4, batch_size=4, progress=False)
    assert all(torch.equal(a[m], b[m]) for m in modules)
    assert not all(torch.equal(a[m], c[m]) for m in modules)


def test_search_finds_shortest_prefix(tiny_llama):
    """A planted ranking: the search stops at the first prefix over the threshold, not later."""
    ids = torch.tensor([[5, 9, 13, 2, 40, 33, 7, 1]])
    ranking = [Neuron("model.layers.1.mlp.down_proj", c) for c in range(16)]
    result = greedy_search(tiny_llama, ids, ranking, epsilon=1e-6, batch_size=3, progress=False)
    nll0 = result.baseline_nll
    first = next(n for n, v in result.curve[1:] if delta(v, nll0) >= 1e-6)
    assert result.size == first
    assert result.neurons == ranking[:first]


def test_short_probe_warns(embedded):
    with pytest.warns(UserWarning, match="T_min"):
        encode(embedded.tokenizer, "Paris is nice.", what="probe text")


# ---- --samples auto --------------------------------------------------------------------------------


def test_samples_auto_gives_the_k100_critical_set_with_fewer_samples(embedded, located):
    auto = locate(
        embedded, text=PROBE_TEXT, config=LocatorConfig(alpha=5, samples="auto", seed=42, progress=False), epsilon=1.0
    )
    assert auto.neurons == located.neurons  # the paper's K = 100 critical set
    used = auto.locator["samples_used"]
    assert auto.locator["samples"] == "auto" and 20 <= used < 100
    assert auto.locator["samples_auto"]["stable"] is True and auto.locator["samples_auto"]["cap"] == 100
    assert located.locator["samples_used"] == 100  # a fixed K records it too
    assert auto.critical.delta == pytest.approx(located.critical.delta, abs=1e-3)
    # the kept look's ranking is in the file, and the set is the prefix of it that stage 2 found
    looks = auto.locator["samples_auto"]["looks"]
    assert [k for k, _, _ in looks][-1] == auto.locator["samples_auto"]["samples_drawn"] and used in [
        k for k, _, _ in looks
    ]
    assert auto.neurons == distinct(auto.ranking[: auto.critical.size])


@pytest.mark.parametrize("settings", [dict(samples="auto"), dict(method="attribution")], ids=["auto", "attribution"])
def test_each_faster_path_gives_a_set_that_collapses_by_an_independent_perplexity(embedded, settings):
    """``--samples auto`` and ``--method attribution``: the set each writes crosses epsilon when measured
    again by two plain forwards (unmasked, then masked through the hooks), not stage 2's batched rows."""
    mask = locate(embedded, LocatorConfig(progress=False, **settings))
    ids = encode(embedded.tokenizer, PROBE_TEXT)
    base = float(mean_nll(embedded.model, ids)[0])
    with masked(embedded.model, mask.neurons):
        independent = delta(float(mean_nll(embedded.model, ids)[0]), base)
    assert mask.neurons and independent >= 1.0
    assert independent == pytest.approx(mask.critical.delta, abs=1e-3)


def test_incremental_stage1_draws_the_fixed_k_noise_stream(tiny_llama):
    """Adding samples a few at a time (as --samples auto does) uses the draws of a fixed-K run: at the cap
    the scores are those of perturbation_scores with K = cap and the same seed and batch size."""
    from lm_eval_achilles.locator.perturbation import Perturbation

    ids = torch.tensor([[5, 9, 13, 2, 40, 33, 7]])
    modules = candidate_modules(tiny_llama)
    fixed = perturbation_scores(tiny_llama, ids, modules, samples=12, seed=3, batch_size=5, progress=False)
    state = Perturbation(tiny_llama, ids, modules, seed=3, batch_size=5, cap=12)
    for n in (3, 4, 2, 10):  # crosses the noise chunks (5, 5, 2) at odd places; the last add stops at the cap
        state.add(n)
    assert state.samples == 12
    inc = state.scores()
    assert list(inc) == list(fixed)
    for m in fixed:
        torch.testing.assert_close(inc[m], fixed[m], rtol=1e-6, atol=1e-6)


def test_auto_decision_keeps_the_smallest_set_and_stops_when_more_samples_find_none_smaller():
    from lm_eval_achilles.locator.perturbation import auto_decision

    assert auto_decision([(10, 1)], min_samples=20) == (False, 0)  # too few samples yet
    assert auto_decision([(10, 1), (20, 1)], min_samples=20) == (True, 1)  # same size: the later look is kept
    assert auto_decision([(10, 13), (20, 15)], min_samples=20) == (True, 0)  # larger: the earlier set is kept
    assert auto_decision([(10, 15), (20, 13)], min_samples=20) == (False, 1)  # still getting smaller: go on
    assert auto_decision([(10, 15), (20, 13), (30, 14)], min_samples=20) == (True, 1)
    assert auto_decision([(10, 0), (20, 0)], min_samples=20) == (False, None)  # nothing found never stops
    assert auto_decision([(10, 0), (20, 9)], min_samples=20) == (False, 1)  # the first set found: go on
    assert auto_decision([(10, 9), (20, 0)], min_samples=20) == (True, 0)  # a look finding none is no improvement
    assert auto_decision([(10, 1), (20, 1)], min_samples=30) == (False, 1)
