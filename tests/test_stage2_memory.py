"""Stage 2's memory and cost: the NLL computed in chunks of positions (the same numbers as all at once),
the number of sets per forward, sets evaluated once (memoised), and ``--minimize``'s default budget."""

from __future__ import annotations

import pytest
import torch

from lm_eval_achilles import defaults
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.perplexity import delta, evaluate_sets, mean_nll, token_nlls
from lm_eval_achilles.locator.search import greedy_search
from lm_eval_achilles.mask.hooks import hooked
from lm_eval_achilles.mask.mask_file import Neuron
from lm_eval_achilles.mask.masking import masked

IDS = torch.tensor([[3, 17, 42, 8, 25, 11, 5, 9, 30, 2, 61, 14]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_nll_equals_the_unchunked_one_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 37, 500, generator=gen) * 4).to(dtype)
    targets = torch.randint(0, 500, (3, 37), generator=gen)
    whole = -torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    for positions in (1, 5, 36, 37, None):
        assert torch.equal(token_nlls(logits, targets, positions), whole), positions


def test_chunked_mean_nll_on_a_model(tiny_llama):
    ids = IDS.expand(3, -1)
    assert torch.equal(mean_nll(tiny_llama, ids, positions=1), mean_nll(tiny_llama, ids))
    assert torch.equal(mean_nll(tiny_llama, ids, positions=4), mean_nll(tiny_llama, ids))


class _Rows:
    """Counts the forwards of a model on the test text and the batch rows of each (a hook on the input
    embedding; the 2-token forward that reads module output sizes is not counted)."""

    def __init__(self, model):
        self.model, self.rows = model, []

    def __enter__(self):
        name = next(n for n, m in self.model.named_modules() if m is self.model.get_input_embeddings())
        self._ctx = hooked(self.model, {name: self._hook})
        self._ctx.__enter__()
        return self

    def _hook(self, _module, inputs, _output):
        if inputs[0].shape[1] == IDS.shape[1]:
            self.rows.append(inputs[0].shape[0])

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def _alone(model, neurons):
    with torch.no_grad(), masked(model, neurons):
        return float(mean_nll(model, IDS)[0])


def test_search_evaluates_each_distinct_set_once_and_uses_the_batch_size(tiny_llama):
    """The linear walk (every prefix measured): batching, each distinct set once, the memo."""
    downs = candidate_modules(tiny_llama, "*down_proj")
    a, b, c, d = (Neuron(downs[0], 0), Neuron(downs[0], 1), Neuron(downs[1], 2), Neuron(downs[1], 3))
    # as a position-granularity ranking gives it: channels repeated at several positions
    ranking = [a, a, b, a, c, c, b, d]
    base = _alone(tiny_llama, [])
    memo: dict = {}
    with _Rows(tiny_llama) as seen:
        res = greedy_search(
            tiny_llama, IDS, ranking, epsilon=100.0, batch_size=3, progress=False, memo=memo, search="linear"
        )
    # 4 distinct sets ({a}, {a,b}, {a,b,c}, {a,b,c,d}) in forwards of at most 3 rows, and the baseline
    assert seen.rows[0] == 1 and sorted(seen.rows[1:]) == [1, 3] and res.stopping_reason == "ranking_exhausted"
    assert len(memo) == 5 and memo[frozenset()] == res.baseline_nll  # the 4 sets, and the baseline
    prefixes = {1: [a], 2: [a], 3: [a, b], 4: [a, b], 5: [a, b, c], 6: [a, b, c], 7: [a, b, c], 8: [a, b, c, d]}
    curve = dict(res.curve)
    for n, neurons in prefixes.items():  # every prefix's NLL is its set's, re-measured alone
        assert curve[n] == pytest.approx(_alone(tiny_llama, neurons), abs=1e-5)
    assert curve[1] == curve[2] and curve[5] == curve[6] == curve[7]
    # a second search on the same text reuses the memo, the baseline too: no forward at all
    with _Rows(tiny_llama) as again:
        res2 = greedy_search(
            tiny_llama, IDS, ranking, epsilon=100.0, batch_size=3, progress=False, memo=memo, search="linear"
        )
    assert again.rows == [] and res2.curve == res.curve
    # the crossing is where the re-measured Delta first reaches epsilon
    eps = max(delta(curve[n], base) for n in prefixes) * 0.999
    res3 = greedy_search(tiny_llama, IDS, ranking, epsilon=eps, batch_size=3, progress=False, search="linear")
    assert res3.size == min(n for n in prefixes if delta(_alone(tiny_llama, prefixes[n]), base) >= eps)


def test_evaluate_sets_evaluates_a_repeated_set_once(tiny_llama):
    down = candidate_modules(tiny_llama, "*down_proj")[0]
    s, t = [Neuron(down, 0)], [Neuron(down, 1), Neuron(down, 0)]
    with _Rows(tiny_llama) as seen:
        out = evaluate_sets(tiny_llama, IDS, [s, t, s, list(reversed(t))], batch_size=8)
    assert seen.rows == [2] and out[0] == out[2] and out[1] == out[3]


def test_minimize_has_a_default_budget():
    assert LocatorConfig(minimize=True).max_evals == defaults.MAX_EVALS == 1000
    assert LocatorConfig(minimize=True).to_record()["max_evals"] == 1000
    assert LocatorConfig(minimize=True, max_evals=None).max_evals is None  # no limit, from Python
    assert "max_evals" not in LocatorConfig().to_record()
    with pytest.raises(AchillesError, match="max_evals=5 needs minimize"):
        LocatorConfig(max_evals=5)
