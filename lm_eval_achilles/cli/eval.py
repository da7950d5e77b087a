"""``achilles eval ARGS...``: exactly the ``lm_eval`` command line, with ``achilles_masked`` registered
and this package's task_configs/ on the include path (in addition to any --include_path you give)."""

from __future__ import annotations

import sys

HELP = "run lm_eval (same arguments) with achilles_masked and the achilles tasks available"


PASS_THROUGH = True  # every argument after ``eval`` goes to lm_eval untouched (``achilles eval --help`` is lm_eval's)


def add_arguments(p):
    p.usage = "achilles eval [lm_eval arguments ...]  (see: achilles eval --help)"


def run_lm_eval(argv: list[str]) -> int:
    from lm_eval.tasks import manager

    from lm_eval_achilles.harness import lm_model  # noqa: F401  (registers achilles_masked)
    from lm_eval_achilles.resources import task_configs_dir

    ours = str(task_configs_dir())
    original_init = manager.TaskManager.__init__

    def init_with_our_tasks(self, *args, include_path=None, **kwargs):
        paths = (
            []
            if include_path is None
            else list(include_path)
            if isinstance(include_path, (list, tuple))
            else [include_path]
        )
        original_init(self, *args, include_path=[ours, *paths], **kwargs)

    manager.TaskManager.__init__ = init_with_our_tasks
    from lm_eval.__main__ import cli_evaluate

    from lm_eval_achilles.errors import AchillesError

    limit = _option(argv, "--limit")
    if limit is not None and _is_zero(limit):
        print("achilles: error: --limit 0 evaluates no document; omit --limit for all of them", file=sys.stderr)
        return 2
    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except AchillesError as exc:
        print(f"achilles: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # lm-eval's own refusals (unknown task, bad argument) are bad input, not crashes
        text = " ".join(str(exc).split())
        print(
            f"achilles: error: lm-eval refused the arguments: {text[:500]} (see: achilles eval --help)", file=sys.stderr
        )
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        manager.TaskManager.__init__ = original_init
    return 0


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in an lm_eval command line (``--limit 5`` or ``--limit=5``), else None."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0
    except ValueError:
        return False


def run(args) -> int:
    return run_lm_eval(list(args.passthrough))
