"""``achilles report``: the paper's Figures 1 and 2 and its before/after response table for one model."""

from __future__ import annotations

from lm_eval_achilles.cli.common import add_model_arguments, add_overwrite_argument, non_negative_int, positive_int

HELP = "plot the phase transition, the layer x module distribution, the answer-token curve and before/after responses"


def add_arguments(p):
    p.add_argument("mask", help="mask file written by `achilles locate`")
    p.add_argument("--out", required=True, help="folder for the PNGs, report.json and report.md")
    add_model_arguments(p)
    p.add_argument(
        "--no-model",
        action="store_true",
        help="only the mask-based Figure 2 (skip loading the model for Figure 1 and the responses)",
    )
    p.add_argument(
        "--extra-steps",
        type=non_negative_int,
        default=4,
        help="Figure 1 masks this many ranked neurons beyond the critical set",
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=32, help="length of the before/after responses")
    p.add_argument(
        "--allow-fingerprint-mismatch", action="store_true", help="use a mask made for another model (warns)"
    )
    add_overwrite_argument(p)


def run(args) -> int:
    from lm_eval_achilles.mask.mask_file import check_fingerprint, load_mask
    from lm_eval_achilles.paper.report import build_report
    from lm_eval_achilles.validate import check_output

    mask = load_mask(args.mask)
    check_output(args.out, results=["report.json"], overwrite=args.overwrite)
    loaded = None
    name = None
    if not args.no_model:
        from lm_eval_achilles.cli.common import load_from_args, model_of_mask
        from lm_eval_achilles.models.loading import fingerprint, weights_digest

        model_of_mask(args, mask)  # the model the mask was made for
        loaded = load_from_args(args)
        check_fingerprint(
            mask, fingerprint(loaded.model), args.allow_fingerprint_mismatch, weights_digest(loaded.model)
        )
        name = loaded.display_name
    paths = build_report(
        mask,
        args.out,
        loaded=loaded,
        model_name=name,
        extra_steps=args.extra_steps,
        max_new_tokens=args.max_new_tokens,
        mask_path=args.mask,
    )
    for key, path in paths.items():
        print(f"{key:<17} {path}")
    return 0
