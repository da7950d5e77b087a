"""Quality filters (docs/protocols.md): every rule, positive and negative."""

import pytest

from lm_eval_achilles.harness.scoring.quality import (
    SIMPLEQA,
    STANDARD,
    is_meaningful,
    is_meaningful_simpleqa,
    longest_run,
)


def test_longest_run():
    assert longest_run("") == 0
    assert longest_run("abc") == 1
    assert longest_run("aabbbbc") == 4
    assert longest_run("x      y") == 6  # spaces count


@pytest.mark.parametrize(
    "text,rule",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("ab", "too_short"),
        ("a.!", "few_alnum"),
        ("abababababab", "low_diversity"),
        ("Well, 1000000 is a lot", "long_run"),
        ("def f():\n        return 1", "long_run"),  # 8-space indentation: a run of 8 spaces
        ("123 456 789", "no_alpha_word"),
        ("+ - * /", "no_alpha_word"),
    ],
)
def test_standard_rules_fire(text, rule):
    assert rule in STANDARD.failures(text)
    assert not is_meaningful(text)


@pytest.mark.parametrize(
    "text,meaningful",
    [
        ("The answer is (C).", True),
        ("abc", True),  # exactly 3 characters
        ("a1 ", False),  # 2 characters after stripping
    ],
)
def test_standard_boundaries(text, meaningful):
    assert is_meaningful(text) is meaningful


def test_standard_negative_cases():
    assert STANDARD.failures("Paris is the capital of France.") == ()
    assert "low_diversity" not in STANDARD.failures("abab")  # len <= 10: rule does not apply
    assert "low_diversity" not in STANDARD.failures("abcabcabcabc")  # 3 distinct chars is enough
    assert "long_run" not in STANDARD.failures("aaaaa b")  # run of 5 is allowed
    assert "no_alpha_word" not in STANDARD.failures("12 plus 3")  # one word with a letter suffices
    assert "few_alnum" not in STANDARD.failures("a1!")


def test_simpleqa_filter_is_lenient():
    assert is_meaningful_simpleqa("7")  # one alnum char is enough
    assert is_meaningful_simpleqa("1945")  # no word rule
    assert SIMPLEQA.failures("aaaaaaaaaa") == ("low_diversity",)
    assert "long_run" in SIMPLEQA.failures("x" + "a" * 11)
    assert "long_run" not in SIMPLEQA.failures("ab" + "a" * 9)
    assert SIMPLEQA.failures("") == ("empty",)
    assert "few_alnum" in SIMPLEQA.failures("?!")
    assert SIMPLEQA.failures("aab") == ()  # len 3: diversity rule does not apply
    assert "low_diversity" in SIMPLEQA.failures("aaaa")
