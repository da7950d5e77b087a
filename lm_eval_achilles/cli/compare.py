"""``achilles compare``: the original and the masked model on the same tasks, paired per document."""

from __future__ import annotations

from lm_eval_achilles.cli.common import (
    add_locator_arguments,
    add_model_arguments,
    add_overwrite_argument,
    finite_float,
    lm_eval_batch_size,
    non_negative_int,
    positive_float,
    positive_int,
)

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
    p.add_argument("--limit", type=positive_float, default=None, help="documents per task (as lm_eval --limit)")
    p.add_argument("--batch-size", type=lm_eval_batch_size, default=1, help="lm-eval batch size (int, auto or auto:N)")
    # lm-eval's own spelling (with underscores) is accepted for every setting lm-eval has
    p.add_argument(
        "--gen_kwargs",
        "--gen-kwargs",
        dest="gen_kwargs",
        default=None,
        help="generation overrides for both runs, e.g. max_gen_toks=64,temperature=0",
    )
    p.add_argument(
        "--num_fewshot",
        "--num-fewshot",
        dest="num_fewshot",
        type=non_negative_int,
        default=None,
        help="few-shot examples (as lm-eval; default: the task's)",
    )
    p.add_argument(
        "--model_args",
        "--model-args",
        dest="model_args",
        default=None,
        help="extra model arguments for both runs, lm-eval's k=v,k=v (parallelize=True,max_length=4096,"
        "attn_implementation=sdpa,add_bos_token=True ...); this package's mask arguments are set by compare",
    )
    p.add_argument(
        "--apply_chat_template",
        "--apply-chat-template",
        dest="apply_chat_template",
        nargs="?",
        const=True,
        default=False,
        metavar="TEMPLATE",
        help="format prompts with the tokenizer's chat template (optionally a named one), as lm-eval",
    )
    p.add_argument(
        "--fewshot_as_multiturn",
        "--fewshot-as-multiturn",
        dest="fewshot_as_multiturn",
        action="store_true",
        help="few-shot examples as a multi-turn chat (needs --apply_chat_template), as lm-eval",
    )
    p.add_argument(
        "--system_instruction",
        "--system-instruction",
        dest="system_instruction",
        default=None,
        help="system instruction prepended to every prompt, as lm-eval",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=1234, help="lm-eval random/numpy/torch/fewshot seed and bootstrap seed"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="offline data: read DIR/<name>.jsonl (sets --metadata data_dir); 'sample' = the packaged sample documents",
    )
    p.add_argument("--metadata", default=None, help="JSON passed to lm-eval as --metadata")
    p.add_argument("--include-path", action="append", default=[], help="extra lm-eval task folder (repeatable)")
    p.add_argument(
        "--top-n",
        type=non_negative_int,
        default=None,
        help="mask the first K ranked neurons instead of the critical set",
    )
    p.add_argument(
        "--scale", type=finite_float, default=None, help="masked channels are multiplied by this (default 0)"
    )
    p.add_argument("--apply", default=None, choices=["hooks", "fold"], help="how the mask is applied")
    p.add_argument(
        "--allow-fingerprint-mismatch", action="store_true", help="use a mask made for another architecture (warns)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not keep lm-eval response caches under OUT/cache")
    p.add_argument("--bootstrap-iters", type=positive_int, default=10_000, help="paired bootstrap resamples")
    p.add_argument(
        "--no-fluency",
        action="store_true",
        help="skip response_nll/disfluent_rate (the answers' fluency under the original model, one more model load)",
    )
    p.add_argument("--confirm-run-unsafe-code", action="store_true", help="passed to lm-eval")
    p.add_argument("--quiet", action="store_true", help="no progress bars while locating")
    add_overwrite_argument(p)
    # without --mask the locator runs first; its settings (--seed, --batch-size and --scale are lm-eval's and
    # the mask's here, so the locator's are --locate-seed, --locate-batch-size, --locate-scale)
    add_locator_arguments(p, taken=("seed", "batch-size", "scale"), minimize=False)


def settings_from_args(args):
    import json
    from pathlib import Path

    from lm_eval_achilles.comparison.conditions import RunSettings
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.models.loading import default_device

    tasks = [t.strip() for t in (args.tasks or "").split(",") if t.strip()]
    if not tasks:
        raise AchillesError(f"--tasks is required unless --original and --masked are given, got {args.tasks!r}")
    from lm_eval_achilles.resources import resolve_data_dir

    if args.data_dir:
        args.data_dir = str(resolve_data_dir(args.data_dir))
    for flag, folder in [("--data-dir", args.data_dir)] + [("--include-path", f) for f in args.include_path]:
        if folder is not None and not Path(folder).is_dir():
            raise AchillesError(f"{flag} {folder} is not a folder")
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
    limit = args.limit  # > 0 and finite (checked by argparse); a whole number >= 1 is a count, as in lm-eval
    if limit is not None:
        limit = int(limit) if limit >= 1 and float(limit).is_integer() else limit
    if args.fewshot_as_multiturn and not args.apply_chat_template:
        raise AchillesError("--fewshot_as_multiturn needs --apply_chat_template (as in lm-eval)")
    from lm_eval_achilles.cli.common import check_model_before_loading

    check_model_before_loading(args)
    return RunSettings(
        tasks=tasks,
        limit=limit,
        batch_size=args.batch_size,
        gen_kwargs=args.gen_kwargs,
        seed=args.seed,
        device=args.device or default_device(),
        metadata=metadata,
        include_path=list(args.include_path),
        use_cache=not args.no_cache,
        num_fewshot=args.num_fewshot,
        confirm_run_unsafe_code=args.confirm_run_unsafe_code,
        apply_chat_template=args.apply_chat_template,
        fewshot_as_multiturn=args.fewshot_as_multiturn,
        system_instruction=args.system_instruction,
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
    from lm_eval_achilles.models.loading import split_revision

    model, revision = split_revision(args.model, args.revision)
    base = {"pretrained": model or "embedded", "dtype": dtype, "gguf_file": args.gguf_file}
    if args.trust_remote_code:
        base["trust_remote_code"] = True
    if revision:
        base["revision"] = revision
    if args.device_map:
        # lm-eval places a model by a device map only with parallelize=True (HFLM drops it otherwise)
        base["parallelize"] = True
        base["device_map"] = args.device_map
    if getattr(args, "allow_fingerprint_mismatch", False):
        base["allow_fingerprint_mismatch"] = True
    for key in ("scale", "apply"):
        if getattr(args, key, None) is not None:
            base[key] = getattr(args, key)
    return {**base, **extra_model_args(args)}


#: Model arguments ``compare`` sets itself per condition: ``--model_args`` may not override them.
OWN_MODEL_ARGS = ("pretrained", "mask", "top_n", "locate", "select")


def extra_model_args(args) -> dict:
    """``--model_args k=v,...`` parsed as lm-eval parses them; the same for both conditions."""
    from lm_eval.utils import simple_parse_args_string

    from lm_eval_achilles.errors import AchillesError

    text = getattr(args, "model_args", None)
    if not text:
        return {}
    bad = [item for item in text.split(",") if item.strip() and "=" not in item]
    if bad:
        raise AchillesError(f"--model_args {text!r}: expected k=v,k=v ({bad[0]!r} has no '=')")
    try:
        extra = simple_parse_args_string(text)
    except ValueError as exc:
        raise AchillesError(f"--model_args {text!r}: expected k=v,k=v ({exc})") from None
    own = [k for k in extra if k in OWN_MODEL_ARGS or k.startswith("locate")]
    if own:
        raise AchillesError(
            f"--model_args {own[0]}=...: compare sets it per condition; use --model, --mask or --top-n instead"
        )
    return extra


def run(args) -> int:
    from pathlib import Path

    from lm_eval_achilles.cli.common import locator_config
    from lm_eval_achilles.comparison.conditions import RESULT_FOLDERS, checked_task_manager
    from lm_eval_achilles.comparison.tables import text_table
    from lm_eval_achilles.comparison.workflow import compare_and_write, compare_model
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.validate import check_output

    out = Path(args.out)
    if bool(args.original) != bool(args.masked):
        raise AchillesError("give both --original and --masked (two existing lm-eval output folders), or neither")
    if args.original:
        tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
        check_output(out, results=["comparison.json"], overwrite=args.overwrite)
        judge = None if args.no_fluency else (lambda: judge_of_run(args.original, args.device))
        result = compare_and_write(
            args.original, args.masked, out, tasks=tasks, iters=args.bootstrap_iters, seed=args.seed, judge=judge
        )
    else:
        # every check before the first lm-eval run: settings, the mask against the model, the output folder
        settings = settings_from_args(args)
        model_args = base_model_args(args)  # --model_args checked here, before locating or evaluating
        check_output(out, results=[*RESULT_FOLDERS, "comparison.json"], overwrite=args.overwrite)
        mask_path = args.mask
        if mask_path is not None:
            check_mask_before_running(args)  # with no --model, it takes the mask's own
            model_args = base_model_args(args)
        else:
            cfg = locator_config(args)
            check_output(out / "mask.json", "file")
            checked_task_manager(settings)  # an unknown task fails now, not after locating
            mask_path = locate_into(args, cfg, out / "mask.json")
        result = compare_model(
            model_args,
            mask_path,
            settings,
            out,
            top_n=args.top_n,
            overwrite=args.overwrite,
            iters=args.bootstrap_iters,
            fluency=not args.no_fluency,
        )
    print(text_table(result.comparison))
    for w in result.comparison["warnings"]:
        print(f"warning: {w}")
    for key, path in result.paths.items():
        print(f"{key:<6} {path}")
    return 0


def judge_of_run(folder, device=None):
    """The unmasked model an existing lm-eval run used (its ``pretrained`` and ``dtype``), to judge fluency."""
    from lm_eval_achilles.comparison.runs import load_run
    from lm_eval_achilles.comparison.workflow import fluency_judge

    model_args = load_run(folder).config.get("model_args") or {}
    if isinstance(model_args, str):  # the lm_eval CLI records the argument string
        from lm_eval.utils import simple_parse_args_string

        model_args = simple_parse_args_string(model_args)
    return fluency_judge(model_args, device)


def check_mask_before_running(args) -> None:
    """The mask file, ``--top-n``, ``--scale``, ``--apply`` and the mask against the model (fingerprint,
    module names, channel ranges, from the model's config alone), so a mask made for another model is
    refused before the original condition is evaluated, not after. Without --model, the model the mask
    was located on is evaluated (as ``achilles report`` and ``export`` do)."""
    from lm_eval_achilles.cli.common import model_of_mask
    from lm_eval_achilles.harness.model_args import MaskingSpec
    from lm_eval_achilles.models.loading import load_skeleton

    spec = MaskingSpec.from_args(
        mask=args.mask,
        top_n=args.top_n,
        scale=0.0 if args.scale is None else args.scale,
        apply=args.apply or "hooks",
        allow_fingerprint_mismatch=args.allow_fingerprint_mismatch,
    )
    model_of_mask(args, spec.mask_file, "using")
    skeleton = load_skeleton(
        args.model, gguf_file=args.gguf_file, trust_remote_code=args.trust_remote_code, revision=args.revision
    )
    if skeleton is not None:
        spec.precheck(skeleton)


def locate_into(args, cfg, path):
    """No --mask: locate with the given locator settings (default the paper's) and save the mask next to
    the comparison."""
    from lm_eval_achilles.cli.common import check_modules_before_loading, load_from_args
    from lm_eval_achilles.cli.summary import print_locate_summary
    from lm_eval_achilles.comparison.workflow import locate_to_file

    check_modules_before_loading(args, cfg.modules)
    loaded = load_from_args(args)
    locate_to_file(loaded, cfg, path, summary=print_locate_summary)
    del loaded
    return path
