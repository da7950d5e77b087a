"""The ``achilles`` command.

Each subcommand lives in ``lm_eval_achilles/cli/<name>.py`` and provides ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; heavy imports stay inside ``run`` so ``achilles --help`` is instant. A module that
sets ``PASS_THROUGH = True`` (``eval``) receives every argument after its name untouched in
``args.passthrough`` (its own ``--help`` too), so it can hand them to another program.

Bad input (an :class:`~lm_eval_achilles.errors.AchillesError`) prints one line, ``achilles: error: ...``,
and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from lm_eval_achilles import __version__
from lm_eval_achilles.errors import AchillesError

_NOT_COMMANDS = {"common"}


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_"):
            yield info.name, importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _passthrough=passthrough)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args._passthrough:
        args.passthrough = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
