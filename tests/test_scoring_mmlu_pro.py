from lm_eval_achilles.harness.scoring import mmlu_pro

DOC = {"question": "What is 2 + 2?", "options": ["3", "5", "6", "4"], "answer": "D"}


def test_prompt_is_the_reference_string():
    prompt = mmlu_pro.build_prompt(DOC["question"], DOC["options"])
    assert prompt == (
        "You are a knowledge expert. You are supposed to answer the multi-choice question to derive your final "
        'answer as "The answer is (X)" where X is the correct option letter.\n\n'
        "Q: What is 2 + 2?\nOptions are:\n(A): 3\n(B): 5\n(C): 6\n(D): 4"
        '\n\nPlease provide your answer as "The answer is (X)" where X is the correct option letter.'
    )


def test_extraction_accepts_only_the_answer_format():
    assert mmlu_pro.extract_choice("The answer is (D).", 4) == 3
    assert mmlu_pro.extract_choice("  the answer is b", 4) == 1  # upper-cased first
    assert mmlu_pro.extract_choice("THE   ANSWER\nIS (A)", 4) == 0  # \s+ between words
    assert mmlu_pro.extract_choice("D", 4) == -1  # no fallback
    assert mmlu_pro.extract_choice("(D) is right", 4) == -1
    assert mmlu_pro.extract_choice("", 4) == -1


def test_first_match_only_and_range():
    assert mmlu_pro.extract_choice("The answer is (B). Actually the answer is (D).", 4) == 1
    # first match out of range -> -1 even though a later one is valid
    assert mmlu_pro.extract_choice("The answer is (J). No, the answer is (A).", 4) == -1
    assert mmlu_pro.extract_choice("The answer is (J)", 10) == 9


def test_score():
    assert mmlu_pro.score(DOC, "The answer is (D)") == {"acc": 1.0, "meaningless_rate": 0.0}
    assert mmlu_pro.score(DOC, "The answer is (A)")["acc"] == 0.0
    assert mmlu_pro.score(DOC, "!!!!!!!!") == {"acc": 0.0, "meaningless_rate": 1.0}
