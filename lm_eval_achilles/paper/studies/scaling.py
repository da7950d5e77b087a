"""``scaling``: the critical set scaled by β instead of zeroed (paper Table 11)."""

from __future__ import annotations

from lm_eval_achilles.formatting import fmt
from lm_eval_achilles.locator.perplexity import delta, evaluate_sets
from lm_eval_achilles.paper.figures import bars
from lm_eval_achilles.paper.studies.common import StudyContext, StudyResult, ppl, short

TITLE = "scaling factor β applied to the critical neurons (paper Table 11)"
BETAS = [1.0, 0.0, -5.0, -1.0, 0.3, 0.5, 0.8, 5.0]


def run(ctx: StudyContext) -> StudyResult:
    neurons, what = ctx.critical_neurons()
    base_eval = ctx.baseline_eval_nll()
    base_probe = evaluate_sets(ctx.model, ctx.probe_ids, [[]])[0]
    rows, data = [], {}
    for beta in BETAS:
        ev = ctx.eval_nll([neurons], scale=beta, desc=f"scaling beta={beta}")[0]
        pr = evaluate_sets(ctx.model, ctx.probe_ids, [neurons], scale=beta)[0]
        data[beta] = {
            "eval_ppl": ppl(ev),
            "probe_ppl": ppl(pr),
            "eval_delta": delta(ev, base_eval),
            "probe_delta": delta(pr, base_probe),
        }
        rows.append([beta, fmt(ppl(ev)), f"{delta(ev, base_eval):.3f}", fmt(ppl(pr)), f"{delta(pr, base_probe):.3f}"])
    worst = max(BETAS, key=lambda b: data[b]["eval_ppl"])
    plot = "scaling.png"
    bars(
        [f"β={b:g}" for b in BETAS],
        [data[b]["eval_ppl"] for b in BETAS],
        ctx.out / "scaling" / plot,
        title=f"scaling {len(neurons)} critical neuron(s): PPL on the evaluation text",
        hline=ppl(base_eval),
        hline_label="unmasked",
    )
    return StudyResult(
        name="scaling",
        title=TITLE,
        claim="β = 0 (complete masking) degrades the model most; β = 0.5, 0.8 barely matter, β = 0.3, −1, −5, 5 hurt less than β = 0.",
        columns=["β", "PPL (eval text)", "Δ (eval)", "PPL (probe)", "Δ (probe)"],
        rows=rows,
        data={"betas": BETAS, "neurons": [short(n) for n in neurons], "set": what, "results": data},
        findings=[
            f"masked set: {what}: {', '.join(short(n) for n in neurons)}",
            f"the most damaging β on the evaluation text is {worst:g} (PPL {fmt(data[worst]['eval_ppl'])}); "
            f"β = 0 gives {fmt(data[0.0]['eval_ppl'])}",
        ],
        notes=["β multiplies the masked channels' outputs at every position (paper eq. 12)."],
        plot=plot,
    )
