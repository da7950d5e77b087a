"""The ``achilles`` command. Each subcommand lives in ``lm_eval_achilles/commands/<name>.py`` and
provides ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; heavy imports stay inside ``run``.

Bad input (an :class:`AchillesError`) prints one line, ``achilles: error: ...``, and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands
from .errors import AchillesError


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield info.name, importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="achilles",
        description="Locate the critical neurons of a causal LM and evaluate it with and without them.",
    )
    parser.add_argument("--version", action="version", version=f"lm_eval_achilles {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        p = sub.add_parser(name.replace("_", "-"), help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "eval":  # pass everything through to lm_eval untouched
        from .commands.eval import run_lm_eval

        return run_lm_eval(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except AchillesError as exc:
        print(f"achilles: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("achilles: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
