import signal
import threading
import time

import pytest

from lm_eval_achilles.harness.scoring import math500, sympy_check
from lm_eval_achilles.harness.scoring.math500 import extract_answer, grade


def test_prompt():
    assert math500.build_prompt("What is 1+1?") == "Solve this math problem step by step:\n\nWhat is 1+1?\n\nSolution:"


# ---- extraction -------------------------------------------------------------------------------------


def test_nested_boxed_is_read_whole():
    assert extract_answer(r"So the result is $\boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert extract_answer(r"\boxed{\left( 3, \frac{\pi}{2} \right)}") == r"\left( 3, \frac{\pi}{2} \right)"


def test_last_boxed_wins_and_unbalanced_is_ignored():
    assert extract_answer(r"\boxed{1} then \boxed{2}") == "2"
    assert extract_answer(r"\boxed{3} and \boxed{\frac{1}{2}") == "3"


def test_answer_phrase_pattern():
    assert extract_answer("Thinking...\nThe final answer is 42.") == "42"
    assert extract_answer("answer: 7\nmore") == "7"


def test_therefore_pattern():
    # pattern 3 has no match (no answer phrase), pattern 4 does
    assert extract_answer("We add them.\nTherefore, x = 9.") == "x = 9"


def test_dollar_pattern():
    assert extract_answer("We get $x^2$, done") == "x^2"


def test_trailing_number_patterns():
    assert extract_answer("Adding gives 12") == "12"
    assert extract_answer("Adding gives 3/4") == "3/4"


def test_frac_pattern_builds_frac():
    assert extract_answer(r"It equals \frac{3}{4} in lowest terms, trust me") == r"\frac{3}{4}"


def test_expression_pattern_and_nothing():
    assert extract_answer("We compute 2 + 3 here, trust me") == "2 + 3"
    assert extract_answer("no digits at all") == ""
    assert extract_answer("") == ""


# ---- grading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred,gold,level",
    [
        (r"\frac{1}{2}", r"\frac{1}{2}", "basic"),
        ("0.5", r"\frac{1}{2}", "basic"),
        (r"\dfrac12", r"\frac{1}{2}", "basic"),
        ("1/2", r"\frac{1}{2}", "basic"),
        (r"x = 5", "5", "basic"),
        (r"90^\circ", "90", "basic"),
        (r"10\%", "10", "basic"),
        (r"\text{(C)}", "(C)", "basic"),
        ("(1, 2)", "(1,2)", "basic"),
        ("5 cm", "5", "advanced"),
        ("12 inches", "12", "advanced"),
        ("1,000", "1000", "advanced"),
        (r"2\sqrt{2}", r"\sqrt{8}", "sympy"),
        ("x^2+2x+1", "(x+1)^2", "sympy"),
        ("(0.5, 3]", r"\left( \frac{1}{2}, 3 \right]", "sympy"),  # interval, element-wise
    ],
)
def test_equivalences(pred, gold, level):
    g = grade(pred, gold)
    assert g == math500.MathGrade(True, level)


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("3", "4"),
        ("[1,2)", "(1,2)"),  # interval brackets must match
        ("(1,2,3)", "(1,2)"),  # element counts must match
        ("1.5", "1"),  # integer vs non-integer
        ("", "5"),
        ("5", ""),
        ("x+y+z", "z+y+x+0*w"),  # more than two letters: sympy not allowed
    ],
)
def test_non_equivalences(pred, gold):
    assert not grade(pred, gold).correct


def test_sympy_time_limit_returns_false_quickly():
    heavy = "(x+1)^9*(x+2)^9*(x+3)^9*(x+4)^9*(x+5)^9*(x+6)^9*(x+7)^9*(x+8)^9*(y+1)^9"
    start = time.perf_counter()
    assert sympy_check.sympy_equal(heavy, "x", time_limit=0.05) is False
    assert time.perf_counter() - start < 2.0


def _spin(seconds: float) -> str:
    """Busy Python code for ``seconds`` (interruptible by a signal between bytecodes)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return "finished"


def test_time_limit_interrupts_in_main_thread_and_worker_thread():
    start = time.perf_counter()
    with pytest.raises(sympy_check.SympyTimeout):
        sympy_check.run_with_time_limit(lambda: _spin(5), 0.1)
    assert time.perf_counter() - start < 1.0
    assert sympy_check.run_with_time_limit(lambda: 7, 1.0) == 7

    box = {}

    def in_thread():
        try:
            sympy_check.run_with_time_limit(lambda: time.sleep(3), 0.1)
        except sympy_check.SympyTimeout:
            box["timed_out"] = True

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(2.0)
    assert box.get("timed_out")


class _SlowFinalizer:
    """Spends its time in ``__del__``, where Python prints and drops any exception raised."""

    def __del__(self):
        _spin(0.3)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_time_limit_survives_an_alarm_lost_in_a_finalizer():
    # The first alarm fires inside __del__ and is dropped (as one did inside a weakref callback in a
    # sympy check on CI); the limit must still stop the computation that follows.
    def lose_first_alarm_then_spin():
        _SlowFinalizer()
        return _spin(5)

    start = time.perf_counter()
    with pytest.raises(sympy_check.SympyTimeout):
        sympy_check.run_with_time_limit(lose_first_alarm_then_spin, 0.05)
    assert time.perf_counter() - start < 2.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed afterwards
    assert sympy_check.run_with_time_limit(lambda: 7, 0.05) == 7


def test_score_needs_meaningful_response():
    assert math500.score({"answer": "5"}, r"Adding, we get $\boxed{5}$.") == {
        "acc": 1.0,
        "extraction_rate": 1.0,
        "meaningless_rate": 0.0,
    }
    # correct number but a run of 6 identical characters -> meaningless -> wrong
    assert math500.score({"answer": "5"}, "so...... \\boxed{5}")["acc"] == 0.0
    assert math500.score({"answer": "5"}, r"The result is \boxed{6}")["acc"] == 0.0


HUGE_ANSWERS = [
    "9**9**9",  # 9^(9^9): a 370-million-digit integer
    "10**-9**9",
    "(9**9)**9**9",
    "sqrt(9**9**9)",
    "x**9**9**9",
    "E**(10**7)",
    "2**20000",
    "99999999!",  # factorials are computed while parsing
    "N(E,9**9)",  # so are most function calls (here: 387 million digits of e)
    "1<<99999999999",  # any Python operator beyond arithmetic
    "1e999999999**2",  # mpmath expands the decimal exponent into an exact integer
]


@pytest.mark.parametrize("gold", [r"\sqrt{2}", "3.5", r"\pi"])
@pytest.mark.parametrize("pred", HUGE_ANSWERS)
def test_huge_numbers_are_rejected_before_sympy_computes_them(pred, gold):
    """Against a non-integer gold these answers reach level 3; the bound rejects them at once instead
    of leaving them to the 5-second limit (which cannot stop a big-integer operation in C, and off the
    main thread leaves the work running in an abandoned thread)."""
    assert grade("2**(1/2)", r"\sqrt{2}").correct  # sympy imported and warm
    start = time.perf_counter()
    assert not grade(pred, gold).correct
    assert time.perf_counter() - start < 1.0  # computing any of them takes minutes


def test_huge_numbers_are_rejected_quickly_off_the_main_thread_too():
    threads_before = threading.active_count()
    box = {}

    def worker():
        start = time.perf_counter()
        box["result"] = [sympy_check.sympy_equal(r"sqrt(2)", pred) for pred in HUGE_ANSWERS]
        box["seconds"] = time.perf_counter() - start

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert box["result"] == [False] * len(HUGE_ANSWERS) and box["seconds"] < 1.0
    assert threading.active_count() == threads_before  # no abandoned sympy thread left computing


def test_height_bound_keeps_ordinary_powers():
    from sympy.parsing.sympy_parser import parse_expr

    assert sympy_check.height_log10(parse_expr("2**10 + 3/4", evaluate=False)) == pytest.approx(
        3.010 + (0.477 + 0.602) + 0.301, abs=0.01
    )  # 1024, 3 * 4^-1, Add
    assert sympy_check.height_log10(parse_expr("x**100 + sqrt(2)", evaluate=False)) is None  # symbolic: no bound
    with pytest.raises(sympy_check.TooLarge):
        sympy_check.height_log10(parse_expr("9**9**9", evaluate=False))
    assert grade("2**(1/2)", r"\sqrt{2}").level == "sympy"
    assert grade("(1/2)**10", r"\frac{1}{1024}").correct
    assert grade("5!/4", "30").correct is False  # integer vs non-integer never reaches sympy
    assert sympy_check.sympy_equal("30", "5!/4")
