"""``achilles check``: CI gate over mask files and comparisons (exit 0 holds, 1 violated, 2 bad input)."""

from __future__ import annotations

HELP = (
    "CI gate: check a mask file or a comparison against stated thresholds, or against the last accepted "
    "checkpoint's (--baseline) (exit 0 holds, 1 violated or inconclusive, 2 bad input)"
)


def add_arguments(p):
    from lm_eval_achilles.comparison.baseline import BASELINE_RULES
    from lm_eval_achilles.comparison.check import COMPARISON_RULES, MASK_RULES

    p.add_argument(
        "inputs",
        nargs="+",
        help="mask file(s) (achilles locate) and/or comparison.json or its folder (achilles compare / demo)",
    )
    g = p.add_argument_group("rules on a mask file")
    helps = {
        "min_critical_size": "holds if the critical set has at least N neurons (or none was found within the step cap)",
        "max_critical_size": "holds if a critical set of at most N neurons was found",
        "min_delta": "holds if Delta = log10(PPL_masked/PPL_original) of the critical set is >= X",
        "max_delta": "holds if Delta of the critical set is <= X",
        "max_baseline_ppl": "holds if the unmasked probe perplexity is <= X",
        "min_minimal_size": "holds if the minimal set (locate --minimize) has at least N neurons "
        "(or no critical set was found)",
        "max_minimal_size": "holds if a minimal set of at most N neurons was found",
    }
    for name, (flag, kind, _) in MASK_RULES.items():
        # checked (count >= 0 / finite number) by run_check, the one place the CLI and the API go through
        g.add_argument(flag, dest=name, action="append", metavar="N" if kind is int else "X", help=helps[name])
    g = p.add_argument_group(
        "rules on a comparison (SPEC = TASK:METRIC=VALUE; TASK may be *; METRIC may be metric,filter)"
    )
    helps = {
        "min_masked_score": "masked score >= VALUE",
        "max_masked_score": "masked score <= VALUE",
        "min_original_score": "original score >= VALUE",
        "max_drop": "degradation <= VALUE (original-masked if higher is better, masked-original if lower is "
        "better; perplexities in orders of magnitude)",
        "min_drop": "degradation >= VALUE",
    }
    for name, (flag, _) in COMPARISON_RULES.items():
        g.add_argument(flag, dest=name, action="append", metavar="SPEC", help=helps[name])
    g = p.add_argument_group(
        "against a baseline: the last accepted checkpoint's mask file and/or comparison (docs/cli.md)"
    )
    g.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="PATH",
        help="the accepted checkpoint's mask file and/or comparison.json (or its folder); at most one of each",
    )
    helps = {
        "max_size_drop": "holds if the new critical (and minimal) set has at most N fewer neurons than the baseline's",
        "max_delta_rise": "holds if the new critical set's Delta exceeds the baseline's by at most X",
        "min_transfer_delta": "holds if the baseline's critical set, masked in the new model, still gives Delta >= X "
        "(loads both models)",
        "max_transfer_delta": "holds if the baseline's critical set in the new model gives Delta <= X (loads both models)",
        "min_overlap": "holds if the Jaccard index of the two critical sets (module, channel) is >= X",
    }
    for name, (flag, kind) in BASELINE_RULES.items():
        g.add_argument(flag, dest=name, action="append", metavar="N" if kind is int else "X", help=helps[name])
    g.add_argument(
        "--max-drop-rise",
        dest="max_drop_rise",
        action="append",
        metavar="SPEC",
        help="TASK:METRIC=VALUE: the new comparison's masked drop exceeds the baseline's by at most VALUE "
        "(paired bootstrap where the documents match)",
    )
    g.add_argument("--model", default=None, help="where the new mask's model is now (default: the name in the mask)")
    g.add_argument(
        "--baseline-model", default=None, help="where the baseline mask's model is now (default: the name in the mask)"
    )
    g.add_argument("--device", default=None, help="device for the transfer rules' models (default: cuda if available)")
    p.add_argument(
        "--junit", default=None, metavar="FILE", help="also write a JUnit XML report (one test case per rule)"
    )
    p.add_argument("--quiet", action="store_true", help="no model-loading messages")


def run(args) -> int:
    from lm_eval_achilles.comparison.baseline import BASELINE_RULES
    from lm_eval_achilles.comparison.check import (
        COMPARISON_RULES,
        MASK_RULES,
        load_subject,
        print_outcomes,
        run_check,
        write_junit,
    )
    from lm_eval_achilles.validate import check_output

    subjects = [load_subject(p) for p in args.inputs]
    baselines = [load_subject(p) for p in args.baseline]
    if args.junit:
        check_output(args.junit, "file")

    def load(mask, which):
        """The model a mask was located on, in the dtype it was located in."""
        from lm_eval_achilles.models.loading import load_model

        where = (args.model if which == "new" else args.baseline_model) or mask.model.name_or_path
        print(f"[achilles] loading the {which} model {where} for the transfer rules", flush=True)
        return load_model(where, dtype=mask.locator.get("dtype") or "auto", device=args.device)

    outcomes = run_check(
        subjects,
        {name: getattr(args, name) or [] for name in MASK_RULES},
        {name: getattr(args, name) or [] for name in COMPARISON_RULES},
        baselines=baselines,
        baseline_rules={name: getattr(args, name) or [] for name in BASELINE_RULES},
        baseline_comparison_rules={"max_drop_rise": args.max_drop_rise or []},
        load=load,
    )
    code = print_outcomes(outcomes)
    if args.junit:
        print(f"junit report: {write_junit(outcomes, args.junit)}")
    return code
