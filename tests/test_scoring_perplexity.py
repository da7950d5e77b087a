"""Perplexity protocol pieces: text selection, the 512-token request strings, token-weighted aggregation."""

import math

import pytest

from lm_eval_achilles.harness.scoring.perplexity import scoring_span, select_texts, token_weighted_perplexity


@pytest.fixture(scope="module")
def tokenizer(embedded_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_path))


@pytest.fixture(scope="module")
def bos_tokenizer(embedded_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_path), add_bos_token=True)


def test_select_texts_length_rules():
    fifty, fifty_one = "x" * 50, "y" * 51
    assert select_texts(["", "  " + fifty + "  ", fifty_one], "wikitext") == [fifty_one]  # > 50
    assert select_texts([fifty, "short", None, fifty_one], "c4") == [fifty, fifty_one]  # >= 50
    assert select_texts([fifty_one] * 5, "c4", max_docs=3) == [fifty_one] * 3
    with pytest.raises(ValueError, match="unknown corpus"):
        select_texts([], "pile")


def _long_text():
    return " ".join(f"Sentence number {i} talks about the river, the bridge and the town." for i in range(120))


def test_span_without_bos_scores_all_but_the_first_token(tokenizer):
    text = "The Valley Railway is a short railway line in the north of the country."
    span = scoring_span(tokenizer, text)
    ids = tokenizer(text).input_ids
    assert span.mode == "first_token"
    assert span.context + span.continuation == text
    assert tokenizer(span.context).input_ids == ids[:1]
    assert span.n_scored == len(ids) - 1 and span.n_tokens == len(ids)


def test_span_truncates_at_512_tokens(tokenizer):
    text = _long_text()
    full = tokenizer(text).input_ids
    assert len(full) > 512
    span = scoring_span(tokenizer, text)
    cut = span.context + span.continuation
    assert tokenizer(cut).input_ids == tokenizer(text, truncation=True, max_length=512).input_ids
    assert span.n_tokens == 512
    assert scoring_span(tokenizer, text, max_tokens=20).n_tokens == 20


def test_span_with_bos_uses_empty_context(bos_tokenizer):
    text = _long_text()
    span = scoring_span(bos_tokenizer, text)
    assert span.mode == "bos" and span.context == ""
    # BOS + the continuation's tokens = the reference's truncated ids (512 incl. BOS)
    ref = bos_tokenizer(text, truncation=True, max_length=512).input_ids
    assert [bos_tokenizer.bos_token_id] + bos_tokenizer(span.continuation, add_special_tokens=False).input_ids == ref
    assert span.n_tokens == 512 and span.n_scored == 511


def test_token_weighted_perplexity_uses_weight_n():
    # text 1: 4 tokens (3 predicted), summed NLL 3.0 -> mean 1.0; text 2: 2 tokens (1 predicted), NLL 2.0
    items = [(-3.0, 3), (-2.0, 1)]
    expected = math.exp((1.0 * 4 + 2.0 * 2) / (4 + 2))
    assert token_weighted_perplexity(items) == pytest.approx(expected)
    # weighting by predicted tokens (N - 1) would give a different number: the test can fail
    assert token_weighted_perplexity(items) != pytest.approx(math.exp((3.0 + 2.0) / 4))


def test_token_weighted_perplexity_edge_cases():
    assert token_weighted_perplexity([(-1000.0, 1)]) == math.inf  # masked models overflow doubles
    assert math.isnan(token_weighted_perplexity([]))
    assert token_weighted_perplexity([(-2.0, 2), (-5.0, 0)]) == pytest.approx(math.exp(1.0))  # no tokens: skipped
