import pytest

from lm_eval_achilles.harness.scoring import mgsm
from lm_eval_achilles.harness.scoring.aggregate import flat_mean, mean_over_flagged


@pytest.mark.parametrize(
    "text,category",
    [
        ("3 + 4", "operations"),
        ("Step 2 is easy", "step_indicators"),
        ("then we stop", "step_indicators"),
        ("we calculate it", "math_language"),
        ("the total is", "math_language"),
        ("so it is", "logical_connectors"),
        ("because of that", "logical_connectors"),
        ("3*4", "calculations"),
        ("Step 1: add\nStep 2: done", "structure"),
        ("1. add\n2. done", "structure"),
        ("- add\n- done", "structure"),
    ],
)
def test_each_category_fires(text, category):
    assert category in mgsm.reasoning_categories(text)


@pytest.mark.parametrize(
    "text,category",
    [
        ("also some", "logical_connectors"),  # "so" only as a word
        ("firstly", "step_indicators"),
        ("summer", "math_language"),
        ("3 apples and 4 pears", "calculations"),
        ("1. only one item", "structure"),  # needs two list/step lines
        ("plain words", "operations"),
    ],
)
def test_categories_do_not_fire(text, category):
    assert category not in mgsm.reasoning_categories(text)


def test_threshold_needs_two_of_six():
    assert mgsm.reasoning_score("a-b") == pytest.approx(1 / 6)
    assert not mgsm.has_reasoning("well-known")  # one category: 1/6 <= 0.2
    assert mgsm.has_reasoning("3 + 4 = 7, so 7")  # operations, calculations, connector
    assert mgsm.reasoning_score("First, 3 + 4 = 7. Then the total is 7, so 7.\n1. a\n2. b") == 1.0


def test_number_extraction():
    assert mgsm.extract_number("The answer is 18.") == 18.0
    assert mgsm.extract_number("He has 3 + 2 = 5 apples. So, 5") == 5.0
    assert mgsm.extract_number("x equals 12.") == 12.0
    assert mgsm.extract_number("It costs 7.5 dollars in total 3") == 3.0
    assert mgsm.extract_number("The answer is 1,250 cups.") == 1250.0
    assert mgsm.extract_number("I also 5 more, then 8.") == 8.0  # "also 5" is not "so 5"
    assert mgsm.extract_number("no numbers") is None


def test_gold_from_answer_number():
    assert mgsm.gold_number({"answer": None, "answer_number": 18}) == 18.0
    assert mgsm.gold_number({"answer": "NULL", "answer_number": "1,200"}) == 1200.0
    assert mgsm.gold_number({"answer": "18"}) is None


def test_score():
    doc = {"question": "q", "answer": None, "answer_number": 5}
    assert mgsm.score(doc, "Tom has 3 + 2 = 5 apples, so the answer is 5.") == {
        "reasoning_rate": 1.0,
        "exact_match": 1.0,
        "reasoning_rate_meaningful": (1.0, True),
        "meaningless_rate": 0.0,
    }
    assert mgsm.score(doc, "The answer is 6.")["exact_match"] == 0.0
    assert mgsm.score(doc, "5 5 5") == {
        "reasoning_rate": 0.0,
        "exact_match": 0.0,
        "reasoning_rate_meaningful": (0.0, False),
        "meaningless_rate": 1.0,
    }


def test_meaningful_only_denominator_is_the_authors():
    """One meaningful response with reasoning among four: 1/4 over all responses (ours), 1/1 over the
    meaningful ones (the authors' denominator), so a collapsed model can still look fine by theirs."""
    doc = {"question": "q", "answer_number": 5}
    rows = [mgsm.score(doc, r) for r in ("First 3 + 2 = 5, so 5.", "", "!!!!!!!!", "5 5 5")]
    assert sum(r["reasoning_rate"] for r in rows) / len(rows) == 0.25
    assert mean_over_flagged([r["reasoning_rate_meaningful"] for r in rows]) == 1.0


def test_aggregations():
    assert flat_mean([[1.0, 0.0], [1.0]]) == pytest.approx(2 / 3)
    assert mean_over_flagged([(1.0, True), (0.0, False), (0.0, True)]) == 0.5
    assert mean_over_flagged([(1.0, False)]) == 0.0
