"""``achilles demo``: locate -> report -> compare on one model (default: the embedded one), offline, a few
minutes on a CPU."""

from __future__ import annotations

HELP = (
    "the main job end to end on the embedded SmolLM2-135M-Instruct, offline: locate, report, "
    "original-vs-masked comparison on the packaged sample documents"
)


def add_arguments(p):
    from lm_eval_achilles.cli.common import (
        add_locator_arguments,
        add_overwrite_argument,
        non_negative_int,
        positive_int,
    )
    from lm_eval_achilles.paper.demo import DEFAULT_TASKS, DemoConfig

    d = DemoConfig()
    p.add_argument("--out", default=str(d.out), help="output folder")
    p.add_argument(
        "--model",
        default=None,
        help="model: a named model (embedded, gemma-3-270m), hub id or local folder (default: the embedded model)",
    )
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="lm-eval tasks or groups")
    p.add_argument(
        "--limit", type=positive_int, default=d.limit, help="documents per task (default: all; as lm_eval --limit)"
    )
    p.add_argument(
        "--max-gen-toks",
        type=non_negative_int,
        default=d.max_gen_toks,
        help="cap on new tokens per answer, for speed (0 = the tasks' own 50/512)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=d.batch_size,
        help="lm-eval batch size (documents per forward/generate call)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder of <name>.jsonl task documents (default: the sample documents shipped in the package)",
    )
    p.add_argument("--mask", default=None, help="reuse this mask file instead of locating")
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="lm-eval and bootstrap seed")
    p.add_argument(
        "--max-new-tokens", type=positive_int, default=d.max_new_tokens, help="length of the before/after responses"
    )
    p.add_argument("--bootstrap-iters", type=positive_int, default=d.bootstrap_iters, help="paired bootstrap resamples")
    p.add_argument("--quiet", action="store_true", help="no progress bars; lm-eval logs errors only")
    add_overwrite_argument(p)
    # --seed and --batch-size are lm-eval's here: the locator's are --locate-seed and --locate-batch-size
    add_locator_arguments(p, taken=("seed", "batch-size"), minimize=False)


def run(args) -> int:
    import logging
    import sys
    from pathlib import Path

    from lm_eval_achilles.cli.common import locator_config
    from lm_eval_achilles.cli.summary import print_locate_summary
    from lm_eval_achilles.comparison.tables import text_table
    from lm_eval_achilles.paper.demo import DemoConfig, run_demo
    from lm_eval_achilles.resources import resolve_data_dir

    logging.getLogger("lm_eval").setLevel(logging.ERROR if args.quiet else logging.WARNING)
    cfg = DemoConfig(
        out=Path(args.out),
        model=args.model,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        limit=args.limit,
        max_gen_toks=args.max_gen_toks or None,
        batch_size=args.batch_size,
        data_dir=resolve_data_dir(args.data_dir) if args.data_dir else None,
        mask=Path(args.mask) if args.mask else None,
        locator=locator_config(args),
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        bootstrap_iters=args.bootstrap_iters,
        progress=not args.quiet,
        command=" ".join(["achilles", *sys.argv[1:]]) if sys.argv[1:2] == ["demo"] else "achilles demo",
        overwrite=args.overwrite,
    )
    result = run_demo(cfg, summary=print_locate_summary)
    print()
    print(
        f"Original vs masked ({len(result.comparison['rows'])} rows; {cfg.limit or 'all'} document(s) per task, "
        f"generation capped at {cfg.max_gen_toks or 'the tasks’'} new tokens):"
    )
    print(text_table(result.comparison))
    print()
    print("plots:")
    for key in ("phase_transition", "layers", "answer_token"):
        if key in result.report:
            print(f"  {result.report[key]}")
    if "plot" in result.comparison_paths:
        print(f"  {result.comparison_paths['plot']}")
    print("pages:")
    print(f"  {result.demo_md}")
    print(f"  {result.report['md']}")
    print(f"  {result.comparison_paths['md']}")
    print(f"mask: {result.mask_path}")
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in result.timings.items()))
    return 0
