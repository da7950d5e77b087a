"""The ``achilles`` command.

Each subcommand lives in ``lm_eval_achilles/cli/<name>.py`` and provides ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; heavy imports stay inside ``run`` so ``achilles --help`` is instant. A module that
sets ``PASS_THROUGH = True`` (``eval``) receives every argument after its name untouched in
``args.passthrough`` (its own ``--help`` too), so it can hand them to another program.

Exit codes, the same for every subcommand (docs/cli.md, "Exit codes"):

- 0: the command did its job (``locate``: a critical set was found; ``check``: every rule holds);
- 1: it ran fine but the answer is negative (``locate``: no critical set within the step cap;
  ``check``: a rule is violated);
- 2: bad input (an :class:`~lm_eval_achilles.errors.AchillesError`, a bad option value, a file that
  cannot be read or written) - one line, ``achilles: error: ...``, nothing written - or a crash (any
  other exception: its traceback, then that line);
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

from lm_eval_achilles import __version__
from lm_eval_achilles.errors import AchillesError

_NOT_COMMANDS = {"common", "summary"}


class UsageError(Exception):
    """A command line argparse cannot parse (unknown option, bad value)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``achilles: error:`` line (as every other bad input),
    not a usage block and a ``SystemExit`` from inside the parser. Abbreviated options are refused
    (``--epsilo 2`` would otherwise run with epsilon = 2 without a word)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see: {self.prog} --help)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default once: not when the help already says it, nor for flags whose default is unset."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_"):
            yield info.name, importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="achilles",
        description="Locate the critical neurons of a causal LM and evaluate it with and without them.",
    )
    parser.add_argument("--version", action="version", version=f"lm_eval_achilles {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        passthrough = getattr(module, "PASS_THROUGH", False)
        p = sub.add_parser(
            name.replace("_", "-"),
            help=module.HELP,
            description=module.HELP,
            add_help=not passthrough,
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _passthrough=passthrough)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        if args._passthrough:
            args.passthrough = extra
        elif extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see: achilles {args.command} --help)")
    except UsageError as exc:
        return _fail(str(exc))
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return int(args._run(args) or 0)
    except AchillesError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a file that cannot be read or written, a full disk ...
        detail = exc.strerror or str(exc) or type(exc).__name__
        return _fail(f"{detail}: {exc.filename}" if exc.filename else detail)
    except KeyboardInterrupt:
        print("achilles: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a crash: keep the traceback for the bug report, exit 2
        traceback.print_exc()
        return _fail(f"crashed with {type(exc).__name__}: {exc}")


def _fail(message: str) -> int:
    print(f"achilles: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
