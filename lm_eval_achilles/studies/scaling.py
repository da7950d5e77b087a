"""``scaling``: the critical set scaled by β instead of zeroed (paper Table 11)."""

from __future__ import annotations

from ..perplexity import evaluate_sets
from .common import StudyContext, StudyResult, delta_of, fmt_ppl, ppl, short
from .plots import bars

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
        data[beta] = {"eval_ppl": ppl(ev), "probe_ppl": ppl(pr), "eval_delta": delta_of(ev, base_eval),
                      "probe_delta": delta_of(pr, base_probe)}
        rows.append([beta, fmt_ppl(ppl(ev)), f"{delta_of(ev, base_eval):.3f}", fmt_ppl(ppl(pr)), f"{delta_of(pr, base_probe):.3f}"])
    worst = max(BETAS, key=lambda b: data[b]["eval_ppl"])
    plot = "scaling.png"
    bars([f"β={b:g}" for b in BETAS], [data[b]["eval_ppl"] for b in BETAS], ctx.out / "scaling" / plot,
         title=f"scaling {len(neurons)} critical neuron(s): PPL on the evaluation text", hline=ppl(base_eval),
         hline_label="unmasked")
    return StudyResult(
        name="scaling", title=TITLE,
        claim="β = 0 (complete masking) degrades the model most; β = 0.5, 0.8 barely matter, β = 0.3, −1, −5, 5 hurt less than β = 0.",
        columns=["β", "PPL (eval text)", "Δ (eval)", "PPL (probe)", "Δ (probe)"],
        rows=rows,
        data={"betas": BETAS, "neurons": [short(n) for n in neurons], "set": what, "results": data},
        findings=[f"masked set: {what}: {', '.join(short(n) for n in neurons)}",
                  f"the most damaging β on the evaluation text is {worst:g} (PPL {fmt_ppl(data[worst]['eval_ppl'])}); "
                  f"β = 0 gives {fmt_ppl(data[0.0]['eval_ppl'])}"],
        notes=["β multiplies the masked channels' outputs at every position (paper eq. 12)."],
        plot=plot,
    )
