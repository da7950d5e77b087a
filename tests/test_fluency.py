"""``response_nll`` / ``disfluent_rate``: the answers' fluency under the original model sees the word salad
that the paper's form-only filter lets through (real embedded model, the committed demo's real runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lm_eval_achilles.comparison.fluency import DISFLUENT_NLL, fluency_rows, generations, response_nlls
from lm_eval_achilles.comparison.runs import load_run

DEMO = Path(__file__).resolve().parents[1] / "results" / "smollm2-135m-instruct" / "demo" / "compare"


@pytest.fixture(scope="module")
def runs():
    return load_run(DEMO / "original"), load_run(DEMO / "masked")


def test_masked_answers_are_far_less_fluent(runs, embedded):
    original, masked = runs
    rows = fluency_rows(original, masked, embedded, tasks=["achilles_mmlu_pro", "achilles_simpleqa"], iters=500)
    by = {(r["task"], r["metric"]): r for r in rows}
    for task in ("achilles_mmlu_pro", "achilles_simpleqa"):
        nll = by[(task, "response_nll")]
        assert nll["n"] == 5 and nll["higher_is_better"] is False
        assert nll["original"] < 1.5 and nll["masked"] > nll["original"] + 4
        assert nll["test"]["ci_low"] > 0  # paired bootstrap of masked - original excludes 0
        rate = by[(task, "disfluent_rate")]
        assert rate["original"] == 0 and rate["masked"] >= 0.8 and rate["threshold"] == DISFLUENT_NLL
    # the paper's filter on the same answers: MMLU-Pro's original answers are the "meaningless" ones
    assert generations(original, "achilles_mmlu_pro") and not generations(original, "achilles_wikitext")


def test_batched_scoring_equals_one_at_a_time(runs, embedded):
    pairs = list(generations(runs[1], "achilles_simpleqa").values()) + [("Question: 2+2?\nAnswer:", "")]
    alone = [response_nlls(embedded.model, embedded.tokenizer, [p], batch_size=1)[0] for p in pairs]
    batched = response_nlls(embedded.model, embedded.tokenizer, pairs, batch_size=8)
    assert batched == pytest.approx(alone, abs=1e-4)
