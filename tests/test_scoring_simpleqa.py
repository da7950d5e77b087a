from lm_eval_achilles.harness.scoring import simpleqa


def test_prompt():
    assert simpleqa.build_prompt("Who?") == (
        "Answer the following question with only the direct answer. Do not provide explanations, reasoning, "
        "or additional text.\n\nQuestion: Who?\nAnswer:"
    )


def test_first_line():
    assert simpleqa.first_line("  Paris\nIt is in France.") == "Paris"
    assert simpleqa.first_line("\n\n Paris \n") == "Paris"
    assert simpleqa.first_line("") == ""


def test_normalize_and_words():
    assert simpleqa.normalize('  "William   Shakespeare." ') == "william shakespeare"
    assert simpleqa.normalize("It's 7!") == "its 7"
    assert simpleqa.words("The Eiffel-Tower, Paris") == {"the", "eiffeltower", "paris"}


def test_match():
    m = simpleqa.match("william shakespeare", "William Shakespeare")
    assert m.exact and m.contains and m.overlap == 1.0
    m = simpleqa.match("Shakespeare wrote it", "William Shakespeare")
    assert not m.exact and m.contains and m.overlap == 0.5
    assert not simpleqa.match("London", "Paris").contains
    assert simpleqa.match("the king", "The Beatles").contains  # any shared word, stop words included
    assert simpleqa.match("anything", "...").contains  # gold without words


def test_score_over_all_responses():
    s = simpleqa.score({"answer": "Paris"}, " Paris\nThe capital of France.")
    assert s == {
        "contains_answer": 1.0,
        "exact_match": 1.0,
        "contains_answer_meaningful": (1.0, True),
        "meaningless_rate": 0.0,
    }
    s = simpleqa.score({"answer": "Paris"}, "!!!")
    assert s == {
        "contains_answer": 0.0,
        "exact_match": 0.0,
        "contains_answer_meaningful": (0.0, False),
        "meaningless_rate": 1.0,
    }
