from lm_eval_achilles.harness.scoring import humaneval


def test_fenced_python_block():
    r = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert humaneval.extract_code(r) == "def add(a, b):\n    return a + b"


def test_fenced_block_without_def_is_skipped():
    r = "```python\nx = 1\n```\n\ndef f():\n    return x\n"
    assert humaneval.extract_code(r) == "def f():\n    return x"


def test_plain_fence_and_inline_fence():
    assert humaneval.extract_code("```\ndef g(): pass\n```") == "def g(): pass"
    assert humaneval.extract_code("```python def h(): return 1```") == "def h(): return 1"


def test_line_scan_keeps_indented_blank_and_def_lines():
    r = "Sure.\ndef f(x):\n    y = x\n\n\treturn y\ndef g():\n    pass\nThat is all.\n    not kept"
    assert humaneval.extract_code(r) == "def f(x):\n    y = x\n\n\treturn y\ndef g():\n    pass"


def test_def_without_colon_returns_whole_response():
    assert humaneval.extract_code("we could def ine it") == "we could def ine it"


def test_body_only_completion_extracts_nothing():
    assert humaneval.extract_code("    return a + b\n") == ""
    assert humaneval.extract_code("") == ""


def test_score_extraction_counts_regardless_of_filter():
    nested = "def f(x):\n    if x:\n        return 1\n    return 0"  # 8-space run: meaningless
    assert humaneval.score({}, nested, execute=False) == {
        "extraction_rate": 1.0,
        "extraction_rate_meaningful": 0.0,
        "meaningless_rate": 1.0,
    }
    assert humaneval.score({}, "def f(x):\n    return x", execute=False) == {
        "extraction_rate": 1.0,
        "extraction_rate_meaningful": 1.0,
        "meaningless_rate": 0.0,
    }
    assert humaneval.score({}, "    return a + b", execute=False)["extraction_rate"] == 0.0


# ---- pass@1 on real HumanEval problems (tests/data/humaneval_real.jsonl, see tests/data/README.md) ----

import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lm_eval_achilles.harness.scoring import code_exec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "humaneval_real.jsonl"
PROBLEMS = {d["task_id"]: d for d in map(json.loads, REAL.read_text().splitlines())}


@pytest.mark.parametrize("task_id", sorted(PROBLEMS))
def test_canonical_completion_passes_and_a_wrong_one_fails(task_id):
    doc = PROBLEMS[task_id]
    assert humaneval.pass_at_1(doc, doc["canonical_solution"]) == 1.0
    assert humaneval.pass_at_1(doc, "    return None\n") == 0.0


def test_full_function_answers_keep_the_prompts_imports_and_helpers():
    longest = PROBLEMS["HumanEval/12"]  # needs the prompt's `from typing import List, Optional`
    answer = (
        "Here is the function:\n```python\ndef longest(strings: List[str]) -> Optional[str]:\n"
        "    if not strings:\n        return None\n    return max(strings, key=len)\n```\nIt returns the first."
    )
    assert humaneval.extract_code(answer).startswith("def longest(")
    assert humaneval.pass_at_1(longest, answer) == 1.0
    find_zero = PROBLEMS["HumanEval/32"]  # calls the prompt's helper poly() and math
    answer = "def find_zero(xs: list):\n" + find_zero["canonical_solution"] + "\nThat is the bisection."
    assert humaneval.pass_at_1(find_zero, answer) == 1.0
    # a continuation is cut where lm-eval's humaneval would stop it
    add = PROBLEMS["HumanEval/53"]
    assert humaneval.pass_at_1(add, "    return x + y\n\nprint(add(1, 2))\nThis adds.") == 1.0


def test_hanging_and_exiting_programs_score_zero_within_the_timeout():
    add = PROBLEMS["HumanEval/53"]
    start = time.perf_counter()
    outcome = code_exec.run_program(humaneval.check_program(add, "    while True:\n        pass\n"), timeout=1.0)
    assert outcome == code_exec.Outcome(False, "timed out")
    assert time.perf_counter() - start < 2.9  # the limit, not the default 3 s, and never past limit + 1
    for body in ("    import sys\n    sys.exit(0)\n", "    import os\n    os._exit(0)\n", "    raise SystemExit\n"):
        assert humaneval.pass_at_1(add, body) == 0.0, body


def test_score_executes_only_when_asked():
    add = PROBLEMS["HumanEval/53"]
    assert "pass_at_1" not in humaneval.score(add, add["canonical_solution"])
    assert humaneval.score(add, add["canonical_solution"], execute=True)["pass_at_1"] == 1.0
    with pytest.raises(ValueError, match="'test'"):
        humaneval.score({"prompt": "p", "entry_point": "f"}, "    return 1\n", execute=True)


def _run_task(tmp_path, monkeypatch, env: bool, confirm: bool):
    """achilles_humaneval through lm_eval.simple_evaluate with an LM that answers every problem with a
    correct body that also writes a marker file: the marker shows whether anything was executed."""
    import lm_eval
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    shutil.copy(REAL, data / "humaneval.jsonl")
    markers = tmp_path / "executed"  # one file per problem whose program ran
    markers.mkdir(exist_ok=True)
    bodies = {
        d["prompt"]: f"    open({str(markers / str(i))!r}, 'w').close()\n" + d["canonical_solution"]
        for i, d in enumerate(PROBLEMS.values())
    }

    class Answers(LM):
        def generate_until(self, requests, disable_tqdm=False):
            return [bodies[r.arguments[0]] for r in requests]

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    if env:
        monkeypatch.setenv(code_exec.ENV_VAR, "1")
    else:
        monkeypatch.delenv(code_exec.ENV_VAR, raising=False)
    monkeypatch.setattr(code_exec, "_NOTICED", set())  # a fresh process: the notice not yet given
    manager = TaskManager(
        include_path=str(ROOT / "task_configs"), include_defaults=False, metadata={"data_dir": str(data)}
    )
    out = lm_eval.simple_evaluate(
        model=Answers(),
        tasks=["achilles_humaneval"],
        task_manager=manager,
        confirm_run_unsafe_code=confirm,
        bootstrap_iters=0,
    )
    executed = len(list(markers.iterdir()))
    return out["results"]["achilles_humaneval"], executed


@pytest.mark.parametrize("env,confirm", [(False, False), (True, False), (False, True)])
def test_without_both_opt_ins_nothing_is_executed(tmp_path, monkeypatch, capsys, env, confirm):
    results, executed = _run_task(tmp_path, monkeypatch, env, confirm)
    assert executed == 0
    assert "pass_at_1,none" not in results
    assert results["extraction_rate,none"] == 0.0  # the extraction metrics are still reported
    notices = [line for line in capsys.readouterr().err.splitlines() if "pass_at_1 is off" in line]
    assert len(notices) == 1, notices  # said once, not once per problem
    assert ("HF_ALLOW_CODE_EVAL=1 is not set" in notices[0]) == (not env)
    assert ("--confirm_run_unsafe_code is not given" in notices[0]) == (not confirm)


def test_with_both_opt_ins_every_problem_is_executed(tmp_path, monkeypatch, capsys):
    results, executed = _run_task(tmp_path, monkeypatch, env=True, confirm=True)
    assert executed == len(PROBLEMS)
    assert results["pass_at_1,none"] == 1.0
    assert "pass_at_1 is off" not in capsys.readouterr().err


def test_the_gate_fails_closed_outside_lm_eval(monkeypatch):
    monkeypatch.setenv(code_exec.ENV_VAR, "1")
    assert code_exec.unsafe_code_confirmed() is False
    assert code_exec.execution_allowed("a_test_task") is False
