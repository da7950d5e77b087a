"""Human-readable one-screen summaries printed by the CLI."""

from __future__ import annotations

import math

from lm_eval_achilles.formatting import fmt
from lm_eval_achilles.mask.mask_file import MaskFile


def print_locate_summary(mask: MaskFile, model_name: str, path) -> None:
    from lm_eval_achilles.locator.config import LocatorConfig

    c = mask.critical
    loc = LocatorConfig.from_record(mask.locator)
    used = mask.locator.get("samples_used")  # a fact of the run, not a setting
    drawn = (mask.locator.get("samples_auto") or {}).get("samples_drawn", used)
    auto = f" (ranking of {used} samples" + (f", {drawn} drawn)" if drawn != used else ")")
    print(f"model      {model_name}  [{mask.model.architecture}, fingerprint {mask.model.fingerprint}]")
    print(
        f"method     {loc.method}  alpha={loc.alpha} K={loc.samples}"
        + (auto if loc.samples == "auto" else "")
        + f" seed={loc.seed} epsilon={loc.epsilon} step={loc.step} granularity={loc.granularity} "
        f"probe={mask.locator.get('probe_tokens')} tokens"
    )
    if c.size == 0:
        print(f"no critical set found ({c.stopping_reason}); best Delta = {c.delta:.3f} orders of magnitude")
    else:
        print(f"critical set: {len(mask.neurons)} neuron(s) (prefix of {c.size} ranking entries)")
        print(f"  {'#':>3}  {'module':<40} {'channel':>7}  {'score':>10}")
        scores = {}
        for r in mask.ranking[: c.size]:
            scores.setdefault(r.neuron, r.score)
        for i, n in enumerate(mask.neurons, 1):
            print(f"  {i:>3}  {n.module:<40} {n.channel:>7}  {scores.get(n, float('nan')):>10.4g}")
    print(
        f"perplexity {fmt(c.baseline_ppl)} -> {fmt(c.masked_ppl)}   "
        f"Delta = {c.delta:.3f} orders of magnitude (epsilon {loc.epsilon})"
    )
    if not math.isfinite(c.masked_ppl):
        print(
            f"collapse   the masked perplexity is {c.masked_ppl}: the masked model produced non-finite values, "
            "counted as Delta = inf"
        )
    if mask.minimal is not None:
        m = mask.minimal
        proof = "verified minimal" if m.verified_minimal else f"NOT verified minimal ({m.stopping_reason})"
        print(
            f"minimal set: {len(m.neurons)} neuron(s), {proof}; Delta = {m.delta:.3f} "
            f"({m.method}, {m.sets_evaluated} sets in {m.forward_passes} batched forwards, {m.seconds:.1f} s)"
        )
        for i, n in enumerate(m.neurons, 1):
            print(f"  {i:>3}  {n.module:<40} {n.channel:>7}")
    spent = f", {c.forward_passes} batched forwards" if c.forward_passes is not None else ""
    shape = {True: ", curve monotone where measured", False: f"; {c.note}"}.get(c.monotone, "")
    print(f"search     {loc.search} over {loc.max_steps} steps at most{spent}{shape}")
    print("curve      " + "  ".join(f"{int(n)}:{fmt(p)}" for n, p in c.curve))
    print(f"wrote      {path}")
