"""Runs inside the child interpreter that :mod:`.code_exec` starts for one program; not imported.

``python -I code_child.py PROGRAM RESULT TOKEN TIMEOUT MEMORY``: reads the program (and deletes the
file), applies the same reliability guard as ``evaluate``'s ``code_eval`` (destructive ``os``/``shutil``
functions, ``subprocess.Popen``, ``exit``/``quit`` disabled), ``exec``-s the program with empty globals
under a ``timeout`` interval timer with stdout/stderr swallowed and stdin unreadable, and writes
``TOKEN`` + "passed", "timed out" or "failed: ..." to RESULT. The random token is written only after
``exec`` has returned, so a program that exits early (``sys.exit(0)``, ``os._exit(0)``) cannot count
as a pass. This is NOT a security sandbox: it only keeps honest mistakes of generated code from
harming the machine, exactly as ``code_eval`` warns.
"""

from __future__ import annotations

import ast
import contextlib
import faulthandler
import io
import os
import signal
import sys


class _Timeout(Exception):
    pass


class _WriteOnly(io.StringIO):
    def read(self, *args, **kwargs):
        raise OSError

    def readline(self, *args, **kwargs):
        raise OSError

    def readlines(self, *args, **kwargs):
        raise OSError

    def readable(self, *args, **kwargs):
        return False


def _limit_memory(limit: int) -> None:
    if limit <= 0:
        return
    import resource

    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(kind, (limit, limit))


def _preload_imports(source: str) -> None:
    """``code_eval`` forks the evaluating process, where the usual modules are already imported, so a
    program may import them after the guard. A fresh interpreter imports them here, before the guard."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            with contextlib.suppress(BaseException):
                __import__(name)


def _reliability_guard() -> None:
    import builtins
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
        "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
        "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
    ):  # fmt: skip
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _on_alarm(signum, frame):
    raise _Timeout()


def main(program_path: str, result_path: str, token: str, timeout: float, memory: int) -> None:
    _limit_memory(memory)
    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    os.remove(program_path)
    result = open(result_path, "w", encoding="utf-8")  # opened before the guard disables file removal
    sys.argv = ["<program>"]  # the token and paths are not the program's business
    _preload_imports(source)
    _reliability_guard()
    sink = _WriteOnly()
    outcome = "passed"
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            sys.stdin = sink
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                exec(compile(source, "<program>", "exec"), {})  # noqa: S102 - the point of this file
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        outcome = "timed out"
    except BaseException as exc:  # SystemExit included: exiting is not passing
        outcome = f"failed: {type(exc).__name__}: {exc}"[:300]
    result.write(f"{token}\n{outcome}")
    result.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
