import pytest

from lm_eval_achilles.harness.scoring import gpqa


@pytest.mark.parametrize(
    "rid,choices,expected,gold",
    [
        (
            "rec06pnAkLOr2t2mp",
            ["10^-4 eV", "10^-11 eV", "10^-8 eV", "10^-9 eV"],
            ["10^-9 eV", "10^-11 eV", "10^-4 eV", "10^-8 eV"],
            2,
        ),
        ("rec0Arme2jcXQZnAW", ["11", "10", "12", "14"], ["11", "14", "10", "12"], 0),
        ("rec0wZvZgiz320KRs", ["-0.7", "0.85", "-1.4", "1.65"], ["-0.7", "0.85", "1.65", "-1.4"], 0),
    ],
)
def test_md5_shuffle_reference_vectors(rid, choices, expected, gold):
    assert gpqa.shuffle_choices(rid, choices) == expected
    doc = {
        "Question": "q",
        "Correct Answer": choices[0],
        "Incorrect Answer 1": choices[1],
        "Incorrect Answer 2": choices[2],
        "Incorrect Answer 3": choices[3],
        "Record ID": rid,
    }
    assert gpqa.prepare(doc) == gpqa.Shuffled(expected, gold)


def test_seed_is_first_four_digest_bytes():
    import hashlib

    assert gpqa.shuffle_seed("abc") == int.from_bytes(hashlib.md5(b"abc").digest()[:4], "big")


def test_prepare_strips_and_drops_empty_answers():
    doc = {
        "Question": "q",
        "Correct Answer": " yes ",
        "Incorrect Answer 1": "no",
        "Incorrect Answer 2": "",
        "Incorrect Answer 3": None,
        "Record ID": "r1",
    }
    shuffled = gpqa.prepare(doc)
    assert sorted(shuffled.choices) == ["no", "yes"] and shuffled.choices[shuffled.gold] == "yes"
    with pytest.raises(ValueError, match="fewer than two"):
        gpqa.prepare({**doc, "Incorrect Answer 1": " "})


def test_prompt_format():
    assert gpqa.build_prompt("Why?", ["a", "b", "c", "d"]) == (
        "Question: Why?\n\nOptions:\n(A) a\n(B) b\n(C) c\n(D) d"
        '\n\nPlease provide your answer as "The answer is (X)" where X is the correct option letter.'
    )


def test_extraction_steps_in_order():
    assert gpqa.extract_choice("The answer is (C)") == gpqa.Extraction(2, "answer_is")
    assert gpqa.extract_choice("the answer is b.") == gpqa.Extraction(1, "answer_is")
    assert gpqa.extract_choice("I pick D because...") == gpqa.Extraction(3, "letter")
    assert gpqa.extract_choice("It is a hard one") == gpqa.Extraction(0, "letter")  # the article "a"
    assert gpqa.extract_choice("## Step 1: think") == gpqa.Extraction(0, "digit")
    assert gpqa.extract_choice("h/4π with 3 terms") == gpqa.Extraction(2, "digit")
    assert gpqa.extract_choice("nothing useful here") == gpqa.Extraction(-1, "none")
    # only as many letters/digits as there are choices
    assert gpqa.extract_choice("option D", n_choices=2) == gpqa.Extraction(-1, "none")
    assert gpqa.extract_choice("value 4", n_choices=3) == gpqa.Extraction(-1, "none")


def test_score_filter_then_extraction():
    choices = ["x", "y", "z", "w"]
    assert gpqa.score_choices(choices, 2, "The answer is (C)") == {
        "acc": 1.0,
        "acc_strict": 1.0,
        "meaningless_rate": 0.0,
    }
    assert gpqa.score_choices(choices, 3, "I think D is right") == {
        "acc": 1.0,
        "acc_strict": 0.0,
        "meaningless_rate": 0.0,
    }
    assert gpqa.score_choices(choices, 0, "The answer is (B)")["acc"] == 0.0
    # a meaningless response is wrong even if a fallback would have hit the gold answer
    assert gpqa.score_choices(choices, 0, "1 1 1") == {"acc": 0.0, "acc_strict": 0.0, "meaningless_rate": 1.0}


def test_acc_strict_needs_a_letter_that_stands_alone():
    choices = ["x", "y", "z", "w"]
    # the paper's step 1 (kept for acc) reads the B of "because" as the answer; acc_strict does not
    response = "I think the answer is because of the electron spin."
    assert gpqa.extract_choice(response) == gpqa.Extraction(1, "answer_is")
    assert gpqa.score_choices(choices, 1, response) == {"acc": 1.0, "acc_strict": 0.0, "meaningless_rate": 0.0}
    assert gpqa.strict_choice("The answer is a hard one to find") == -1  # the article, not (A)
    assert gpqa.strict_choice("The answer is Definitely wrong") == -1
    assert gpqa.strict_choice("The answer is (C) because of symmetry") == 2
    assert gpqa.strict_choice("the answer is (b)") == 1
    assert gpqa.strict_choice("The answer is D.") == 3
    assert gpqa.strict_choice("THE ANSWER IS C") == 2
    assert gpqa.strict_choice("so the answer is a.") == 0
    assert gpqa.strict_choice("the answer is b\nbecause") == 1
    assert gpqa.strict_choice("The answer is (D)", n_choices=3) == -1
    # the first answer whose letter stands alone counts
    assert gpqa.strict_choice("The answer is because... The answer is (C).") == 2
