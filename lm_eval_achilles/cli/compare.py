"""``achilles compare``: the original and the masked model on the same tasks, paired per document."""

from __future__ import annotations

from lm_eval_achilles.cli.common import add_model_arguments

HELP = "evaluate the original and the masked model with identical settings and compare them per document"


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--mask", default=None, help="mask file (default: run `achilles locate` first, into OUT/mask.json)")
    p.add_argument("--tasks", default=None, help="comma-separated lm-eval tasks or groups, e.g. achilles,achilles_ppl")
    p.add_argument("--out", required=True, help="output folder: original/, masked/, cache/, comparison.json/.md/.png")
    p.add_argument(
        "--original",
        default=None,
        help="existing lm-eval output folder of the original model "
        "(with --masked: compare these two runs, evaluate nothing)",
    )
    p.add_argument("--masked", default=None, help="existing lm-eval output folder of the masked model")
    p.add_argument("--limit", type=float, default=None, help="documents per task (as lm_eval --limit)")
    p.add_argument("--batch-size", default="1", help="lm-eval batch size (int or auto)")
    p.add_argument("--gen-kwargs", default=None, help="generation overrides for both runs, e.g. max_gen_toks=64")
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234, help="lm-eval random/numpy/torch/fewshot seed and bootstrap seed")
    p.add_argument("--data-dir", default=None, help="offline data: read DIR/<name>.jsonl (sets --metadata data_dir)")
    p.add_argument("--metadata", default=None, help="JSON passed to lm-eval as --metadata")
    p.add_argument("--include-path", action="append", default=[], help="extra lm-eval task folder (repeatable)")
    p.add_argument(
        "--top-n", type=int, default=None, help="mask the first K ranked neurons instead of the critical set"
    )
    p.add_argument("--scale", type=float, default=None, help="masked channels are multiplied by this (default 0)")
    p.add_argument("--apply", default=None, choices=["hooks", "fold"], help="how the mask is applied")
    p.add_argument("--no-cache", action="store_true", help="do not keep lm-eval response caches under OUT/cache")
    p.add_argument("--bootstrap-iters", type=int, default=10_000, help="paired bootstrap resamples")
    p.add_argument("--confirm-run-unsafe-code", action="store_true", help="passed to lm-eval")


def settings_from_args(args):
    import json

    from lm_eval_achilles.comparison.conditions import RunSettings
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.models.loading import default_device

    if not args.tasks:
        raise AchillesError("--tasks is required unless --original and --masked are given")
    metadata = {}
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except json.JSONDecodeError as exc:
            raise AchillesError(f"--metadata is not valid JSON: {exc}") from exc
        if not isinstance(metadata, dict):
            raise AchillesError("--metadata must be a JSON object")
    if args.data_dir:
        metadata["data_dir"] = args.data_dir
    limit = args.limit
    if limit is not None:
        if limit <= 0:
            raise AchillesError(f"--limit must be > 0, got {limit}")
        limit = int(limit) if limit >= 1 and float(limit).is_integer() else limit
    batch = args.batch_size if args.batch_size.startswith("auto") else int(args.batch_size)
    return RunSettings(
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
        limit=limit,
        batch_size=batch,
        gen_kwargs=args.gen_kwargs,
        seed=args.seed,
        device=args.device or default_device(),
        metadata=metadata,
        include_path=list(args.include_path),
        use_cache=not args.no_cache,
        num_fewshot=args.num_fewshot,
        confirm_run_unsafe_code=args.confirm_run_unsafe_code,
    )


def base_model_args(args) -> dict:
    """HFLM arguments shared by both conditions (``pretrained`` omitted = the embedded model)."""
    from lm_eval_achilles.models.loading import default_device

    device = args.device or default_device()
    dtype = args.dtype
    if dtype == "auto" and not str(device).startswith("cuda"):
        dtype = "float32"  # as lm_eval_achilles.models.loading: half precision is slow on a CPU
    # the device goes to lm-eval as its own argument (RunSettings.device), not inside model_args
    # "embedded" names the default model explicitly (the perplexity tasks then cut texts with its tokenizer)
    base = {"pretrained": args.model or "embedded", "dtype": dtype, "gguf_file": args.gguf_file}
    if args.trust_remote_code:
        base["trust_remote_code"] = True
    for key in ("scale", "apply"):
        if getattr(args, key, None) is not None:
            base[key] = getattr(args, key)
    return base


def run(args) -> int:
    from pathlib import Path

    from lm_eval_achilles.comparison.conditions import run_conditions
    from lm_eval_achilles.comparison.metrics import compare_folders
    from lm_eval_achilles.comparison.tables import text_table, write_comparison
    from lm_eval_achilles.errors import AchillesError

    out = Path(args.out)
    if bool(args.original) != bool(args.masked):
        raise AchillesError("give both --original and --masked (two existing lm-eval output folders), or neither")
    if args.original:
        original, masked = args.original, args.masked
        tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    else:
        settings = settings_from_args(args)
        mask_path = args.mask
        if mask_path is None:
            mask_path = locate_into(args, out / "mask.json")
        original, masked = run_conditions(base_model_args(args), mask_path, settings, out, top_n=args.top_n)
        tasks = None
    comparison = compare_folders(original, masked, tasks=tasks, iters=args.bootstrap_iters, seed=args.seed)
    paths = write_comparison(comparison, out)
    print(text_table(comparison))
    for w in comparison["warnings"]:
        print(f"warning: {w}")
    for key, path in paths.items():
        print(f"{key:<6} {path}")
    return 0


def locate_into(args, path):
    """No --mask: locate with the paper's defaults and save the mask next to the comparison."""
    from lm_eval_achilles.cli.common import load_from_args
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.locator.mask_file import save_mask
    from lm_eval_achilles.locator.rankers import RankerConfig
    from lm_eval_achilles.locator.summary import print_locate_summary

    loaded = load_from_args(args)
    mask = locate(loaded, config=RankerConfig(progress=True), dtype=args.dtype)
    save_mask(mask, path)
    print_locate_summary(mask, loaded.display_name, path)
    del loaded
    return path
