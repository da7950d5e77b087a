"""``probes``: the critical set found from 16 probe texts of 4 types x 5 languages (paper Table 19)."""

from __future__ import annotations

from lm_eval_achilles.paper.figures import membership
from lm_eval_achilles.paper.studies.common import StudyContext, StudyResult, short
from lm_eval_achilles.paper.studies.texts import PROBES

TITLE = "critical set from 16 probe texts of 4 types and 5 languages (paper Table 19)"


def run(ctx: StudyContext) -> StudyResult:
    probes = PROBES[:3] if ctx.quick else PROBES
    ref = ctx.critical()
    ref_set = set(ref.neurons)
    rows, data, sets = [], [], []
    for i, (kind, lang, text) in enumerate(probes, 1):
        res = ctx.search(ctx.ranking("perturbation", text=text), text=text)
        same = set(res.neurons) == ref_set and res.size > 0
        sets.append(res.neurons)
        rows.append(
            [
                i,
                kind,
                lang,
                int(ctx.ids(text).shape[1]),
                res.size if res.size else f"none ({res.stopping_reason})",
                ", ".join(short(n) for n in res.neurons[:8]) + (" ..." if len(res.neurons) > 8 else ""),
                "yes" if same else "no",
                f"{res.delta:.3f}",
            ]
        )
        data.append(
            {
                "type": kind,
                "language": lang,
                "text": text,
                "tokens": int(ctx.ids(text).shape[1]),
                "size": res.size,
                "neurons": [short(n) for n in res.neurons],
                "delta": res.delta,
                "baseline_ppl": res.baseline_ppl,
                "masked_ppl": res.masked_ppl,
                "same_as_reference": same,
            }
        )
    union = []
    for s in [list(ref.neurons)] + sets:
        for n in s:
            if n not in union:
                union.append(n)
    union = union[:30]
    plot = "probes.png"
    membership(
        ["Bookends (reference)"] + [f"{i} {k}/{lang}" for i, (k, lang, _t) in enumerate(probes, 1)],
        [short(n) for n in union],
        [[n in set(s) for n in union] for s in [list(ref.neurons)] + sets],
        ctx.out / "probes" / plot,
        title="membership of each probe's critical set",
    )
    n_same = sum(d["same_as_reference"] for d in data)
    sizes = sorted({d["size"] for d in data})
    return StudyResult(
        name="probes",
        title=TITLE,
        claim=(
            "For inputs over 10 tokens the same critical neurons are found whatever the text type (Wikipedia, news, "
            "biography, media) or language (English, French, German, Chinese, Spanish): DeepSeek-R1-Distill-Llama-70B "
            "gives the same 3 neurons for all 16 inputs."
        ),
        columns=["#", "type", "language", "tokens", "critical size", "critical set", "same as Bookends set", "Δ"],
        rows=rows,
        data={
            "reference": {"text": ctx.probe_text, "neurons": [short(n) for n in ref.neurons], "size": ref.size},
            "probes": data,
        },
        findings=[
            f"reference (Bookends probe) critical set: {', '.join(short(n) for n in ref.neurons) or 'none'}",
            f"{n_same} of {len(data)} probes give exactly the same set; critical sizes seen: {sizes}",
        ],
        notes=[
            "Each probe: stage 1 (perturbation, alpha/K of the context) on the probe, stage 2 on the same probe "
            "(as the paper). Texts written for this project (studies/texts.py), not the paper's."
        ],
        plot=plot,
    )
