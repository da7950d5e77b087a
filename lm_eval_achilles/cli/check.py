"""``achilles check``: CI gate over mask files and comparisons (exit 0 holds, 1 violated, 2 bad input)."""

from __future__ import annotations

HELP = "CI gate: check a mask file or a comparison against stated thresholds (exit 0 holds, 1 violated, 2 bad input)"


def add_arguments(p):
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


def run(args) -> int:
    from lm_eval_achilles.comparison.check import COMPARISON_RULES, MASK_RULES, load_subject, print_outcomes, run_check

    subjects = [load_subject(p) for p in args.inputs]
    outcomes = run_check(
        subjects,
        {name: getattr(args, name) or [] for name in MASK_RULES},
        {name: getattr(args, name) or [] for name in COMPARISON_RULES},
    )
    return print_outcomes(outcomes)
