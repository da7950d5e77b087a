"""Stage 2 with non-finite perplexities: a NaN baseline is an error, a NaN/inf masked perplexity a collapse."""

from __future__ import annotations

import math

import pytest
import torch

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.perplexity import delta
from lm_eval_achilles.locator.search import greedy_search
from lm_eval_achilles.mask.mask_file import Neuron

IDS = torch.tensor([[3, 17, 42, 8, 25, 11, 5, 9]])


def _ranking(model):
    return [Neuron(m, c) for m in candidate_modules(model, "*down_proj") for c in range(4)]


def test_delta_of_a_non_finite_masked_nll_is_a_collapse():
    assert delta(math.nan, 2.0) == math.inf
    assert delta(math.inf, 2.0) == math.inf
    assert math.isnan(delta(3.0, math.nan))  # a NaN baseline is no collapse (refused by the search)
    assert delta(2.0 + math.log(10), 2.0) == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [math.nan, math.inf])
def test_nan_masked_perplexity_counts_as_crossing_epsilon(tiny_llama, scale):
    """scale = NaN/inf turns the masked channels (and then the logits) non-finite: the first prefix already
    collapses the model. Before the fix NaN >= epsilon was False and the search ran to its step cap."""
    res = greedy_search(tiny_llama, IDS, _ranking(tiny_llama), epsilon=1.0, max_steps=6, scale=scale, progress=False)
    assert res.stopping_reason == "threshold"
    assert res.size == 1
    assert res.delta == math.inf and res.collapsed_nonfinite
    assert not math.isfinite(res.masked_ppl)  # reported as it was seen (NaN), not made up
    assert math.isfinite(res.baseline_ppl)


def test_nan_baseline_is_an_error(tiny_llama):
    with torch.no_grad():
        tiny_llama.lm_head.weight[5, 0] = math.nan  # every position's logits are NaN
    with pytest.raises(AchillesError, match="unmasked model's perplexity on the test text is nan"):
        greedy_search(tiny_llama, IDS, _ranking(tiny_llama), epsilon=1.0, max_steps=3, progress=False)
