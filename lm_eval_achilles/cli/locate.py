"""``achilles locate``: find the critical neurons and write a mask file (exit 0 found, 1 none within the
step cap, 2 bad input)."""

from __future__ import annotations

from lm_eval_achilles import defaults
from lm_eval_achilles.cli.common import (
    add_model_arguments,
    check_modules_before_loading,
    finite_float,
    load_from_args,
    non_negative_int,
    nonempty_str,
    positive_float,
    positive_int,
    read_text,
)

HELP = "locate the critical neurons (the paper's two stages) and write a mask file"


def samples_arg(text: str):
    """``--samples``: an integer >= 1 or ``auto``."""
    return text if text == "auto" else positive_int(text)


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument(
        "--text", type=nonempty_str, default=None, help="probe text (default: the paper's Bookends paragraph)"
    )
    p.add_argument("--text-file", default=None, help="read the probe text from a file")
    p.add_argument(
        "--test-text", type=nonempty_str, default=None, help="stage-2 perplexity text (default: the probe text)"
    )
    p.add_argument(
        "--method", default="perturbation", help="perturbation (the paper), activation, gradient, random, keystone"
    )
    p.add_argument("--alpha", type=positive_float, default=defaults.ALPHA, help="noise scale of stage 1")
    p.add_argument(
        "--samples",
        type=samples_arg,
        default=defaults.SAMPLES,
        help="number of noisy samples K, or 'auto': stop when the top of the ranking is stable (cap 100)",
    )
    p.add_argument(
        "--epsilon", type=positive_float, default=defaults.EPSILON, help="threshold in orders of magnitude of PPL"
    )
    p.add_argument("--step", type=positive_int, default=defaults.STEP, help="greedy step size")
    p.add_argument("--max-steps", type=positive_int, default=defaults.MAX_STEPS, help="stage-2 step cap")
    p.add_argument("--seed", type=non_negative_int, default=defaults.SEED)
    p.add_argument(
        "--granularity",
        default="channel",
        choices=["channel", "position"],
        help="rank distinct channels, or (module, position, channel) entries as the paper counts",
    )
    p.add_argument("--modules", default=None, help="restrict candidates: globs (e.g. '*down_proj') or re:REGEX")
    p.add_argument("--scale", type=finite_float, default=0.0, help="masked channels are multiplied by this (beta)")
    p.add_argument("--batch-size", type=positive_int, default=25, help="noisy samples per forward in stage 1")
    p.add_argument(
        "--ranking-size", type=positive_int, default=defaults.RANKING_SIZE, help="ranked entries kept in the file"
    )
    p.add_argument(
        "--minimize",
        action="store_true",
        help="after the paper's prefix, search a smaller verified-minimal set that still crosses epsilon "
        "(stored as 'minimal' beside 'critical'; docs/method.md)",
    )
    p.add_argument(
        "--max-evals",
        type=positive_int,
        default=None,
        help="--minimize budget: at most this many candidate sets evaluated (default: no limit)",
    )
    p.add_argument("--out", required=True, help="mask file to write (JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.locator.locate import check_arguments, locate

    if args.max_evals is not None and not args.minimize:
        raise AchillesError(f"--max-evals {args.max_evals} needs --minimize")
    from lm_eval_achilles.cli.summary import print_locate_summary
    from lm_eval_achilles.locator.rankers import RankerConfig
    from lm_eval_achilles.mask.mask_file import save_mask
    from lm_eval_achilles.validate import check_output

    # everything that can be wrong is checked before the model is loaded
    text = read_text(args)
    cfg = RankerConfig(
        alpha=args.alpha,
        samples=args.samples,
        seed=args.seed,
        granularity=args.granularity,
        batch_size=args.batch_size,
        k=args.ranking_size,
        progress=not args.quiet,
    )
    check_arguments(text, args.method, args.test_text, args.epsilon, args.step, args.max_steps, args.scale)
    check_output(args.out, "file")
    check_modules_before_loading(args)
    loaded = load_from_args(args)
    mask = locate(
        loaded,
        text=text,
        method=args.method,
        test_text=args.test_text,
        config=cfg,
        epsilon=args.epsilon,
        step=args.step,
        max_steps=args.max_steps,
        modules=args.modules,
        scale=args.scale,
        dtype=args.dtype,
        minimize=args.minimize,
        max_evals=args.max_evals,
    )
    path = save_mask(mask, args.out)
    print_locate_summary(mask, loaded.display_name, path)
    return 0 if mask.critical.size > 0 else 1
