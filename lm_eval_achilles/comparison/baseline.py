"""``achilles check NEW --baseline OLD``: a new checkpoint against the last accepted one.

A robustness regression is relative. Given the accepted checkpoint's mask file (and optionally its
comparison) and the new one's, this module reports, next to each other, the sizes and Δ of the critical
and minimal sets, their overlap (shared neurons and the Jaccard index over ``(module, channel)``: did the
Achilles' heel move?), the **transfer** (the old set masked in the new model and the new set in the old
model, Δ measured on each model's own stage-2 text, never assumed) and, for comparisons, each task's
masked drop on the new model against the old one's (a paired bootstrap where both runs scored the same
documents). Rules turn those numbers into ok / FAIL / inconclusive lines (:mod:`.check`).

Rules (all optional, each may be repeated):

==============================  ==============================================================
``--max-size-drop N``           the new critical set (and minimal set, when both files have one)
                                has at most N fewer neurons than the old one
``--max-delta-rise X``          the new critical set's Δ exceeds the old one's by at most X
``--min-transfer-delta X``      the old critical set still raises the new model's perplexity by
                                at least X orders of magnitude (the heel is still there)
``--max-transfer-delta X``      ... by at most X (the heel is gone)
``--min-overlap X``             Jaccard index of the two critical sets >= X
``--max-drop-rise SPEC``        (comparisons) TASK:METRIC=VALUE: the new masked drop exceeds the
                                old one by at most VALUE
==============================  ==============================================================

A size or Δ rule is *inconclusive* (exit 1, never a silent pass) when the two files were located with
different settings, or when a set was not found within the step cap and the bound that leaves cannot
decide the rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lm_eval_achilles.comparison.specs import degradation, matching_rows
from lm_eval_achilles.comparison.stats import paired_bootstrap
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.search import walked
from lm_eval_achilles.mask.mask_file import MaskFile, Neuron

BASELINE_RULES = {
    "max_size_drop": ("--max-size-drop", int),
    "max_delta_rise": ("--max-delta-rise", float),
    "min_transfer_delta": ("--min-transfer-delta", float),
    "max_transfer_delta": ("--max-transfer-delta", float),
    "min_overlap": ("--min-overlap", float),
}
BASELINE_COMPARISON_RULES = {"max_drop_rise": "--max-drop-rise"}

#: Settings that do not change which set is found (how many entries the file keeps, how sets are batched;
#: ``search``: the galloping walk returns the linear walk's prefix on a monotone curve and falls back to the
#: linear walk where the points it measured are not monotone, docs/method.md).
NEUTRAL_SETTINGS = ("ranking_size", "search_batch_size", "max_evals", "search")


def settings_differences(new: MaskFile, old: MaskFile) -> dict[str, tuple]:
    """Locator settings that differ between the two files (``{field: (new, old)}``), ignoring those that
    cannot change the result."""
    diff = LocatorConfig.from_record(new.locator).differences(LocatorConfig.from_record(old.locator))
    return {k: v for k, v in diff.items() if k not in NEUTRAL_SETTINGS}


def check_same_architecture(new: MaskFile, old: MaskFile, new_path, old_path) -> None:
    if new.model.fingerprint != old.model.fingerprint:
        raise AchillesError(
            f"the baseline {old_path} was located on another architecture (fingerprint {old.model.fingerprint}, "
            f"{old.model.architecture}) than {new_path} (fingerprint {new.model.fingerprint}, "
            f"{new.model.architecture}); a regression check compares checkpoints of one model"
        )


def overlap(a: Sequence[Neuron], b: Sequence[Neuron]) -> tuple[int, float]:
    """Shared neurons and the Jaccard index |a ∩ b| / |a ∪ b| over ``(module, channel)`` (1.0 for two empty sets)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb), (len(sa & sb) / len(union) if union else 1.0)


def tried_size(mask: MaskFile) -> int:
    """The largest prefix stage 2 evaluated (ranking entries): with no critical set found, the critical
    set is larger than this. A walk stopped by ``--patience`` covered only the prefixes it walked one
    step at a time (the galloping search may have measured longer ones, which prove nothing on a curve
    that was not monotone): then the longest run step, 2 step, ... that was measured."""
    sizes = {int(n) for n, _ in mask.critical.curve}
    if mask.critical.stopping_reason != "patience":
        return max(sizes, default=0)
    step = int(mask.locator.get("step", 1))
    return step * walked({n // step for n in sizes if n % step == 0})


@dataclass
class Line:
    """One line of the report: a rule (``holds`` True / False / None = inconclusive) or, with ``rule=None``,
    information shown beside the rules."""

    rule: str | None
    holds: bool | None
    message: str


def _size_lines(new: MaskFile, old: MaskFile, limit: int, differ: bool) -> list[Line]:
    flag = BASELINE_RULES["max_size_drop"][0]
    out = []
    n_found, o_found = new.critical.size > 0, old.critical.size > 0
    n_size, o_size = len(new.neurons), len(old.neurons)
    if differ:
        out.append(
            Line(flag, None, f"critical set size {n_size} vs baseline {o_size}: located with different settings")
        )
    elif n_found and o_found:
        out.append(
            Line(
                flag,
                o_size - n_size <= limit,
                f"critical set size {n_size} vs baseline {o_size}: drop {o_size - n_size} <= {limit}",
            )
        )
    elif not n_found:  # the new model needs more than it was tried with: it did not shrink below that
        lower = tried_size(new) + 1
        holds = True if not o_found or o_size - lower <= limit else None
        out.append(
            Line(
                flag,
                holds,
                f"no critical set within {tried_size(new)} entries (baseline {o_size if o_found else 'none'}): drop <= {limit}",
            )
        )
    else:  # baseline had none within its cap: its size is only bounded from below
        drop_at_least = tried_size(old) + 1 - n_size
        holds = False if drop_at_least > limit else None
        out.append(
            Line(
                flag,
                holds,
                f"critical set size {n_size}, baseline none within {tried_size(old)} entries: drop >= {drop_at_least}, limit {limit}",
            )
        )
    if new.minimal is not None and old.minimal is not None:
        nm, om = len(new.minimal.neurons), len(old.minimal.neurons)
        if differ:
            out.append(Line(flag, None, f"minimal set size {nm} vs baseline {om}: located with different settings"))
        else:
            out.append(
                Line(flag, om - nm <= limit, f"minimal set size {nm} vs baseline {om}: drop {om - nm} <= {limit}")
            )
    return out


def transfer_delta(loaded, neurons: Sequence[Neuron], mask: MaskFile) -> float:
    """Δ of masking ``neurons`` in ``loaded``, on the stage-2 text of ``mask`` (the mask located on that
    model: its test text, else its probe text, cut as stage 2 cuts it) with its β."""
    from lm_eval_achilles.defaults import MAX_PPL_TOKENS
    from lm_eval_achilles.locator.perplexity import baseline_nll, delta, encode, evaluate_sets

    cfg = LocatorConfig.from_record(mask.locator)
    text = cfg.test_text or cfg.text
    ids = encode(loaded.tokenizer, text, MAX_PPL_TOKENS, what="stage-2 text")[:, :MAX_PPL_TOKENS]
    base = baseline_nll(loaded.model, ids)
    if not neurons:
        return 0.0
    (masked,) = evaluate_sets(loaded.model, ids, [list(neurons)], scale=cfg.scale)
    return delta(masked, base)


def baseline_lines(
    new: MaskFile,
    old: MaskFile,
    rules: dict[str, Sequence[float]],
    new_path: str,
    old_path: str,
    load: Callable[[MaskFile, str], object] | None = None,
) -> list[Line]:
    """Every rule on the pair of mask files, plus the information lines. ``load(mask, which)`` returns the
    model a mask was located on (``which`` = "new" or "baseline"); it is called only when a transfer rule
    is given."""
    check_same_architecture(new, old, new_path, old_path)
    lines: list[Line] = []
    differ = settings_differences(new, old)
    if differ:
        shown = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in differ.items())
        lines.append(
            Line(None, None, f"warning: located with different settings ({shown}); size and Δ rules are inconclusive")
        )
    c_new, c_old = new.critical, old.critical
    shared, jac = overlap(new.neurons, old.neurons)
    lines.append(
        Line(
            None,
            None,
            f"critical set: {len(new.neurons)} neuron(s), Δ {c_new.delta:.3f}, baseline PPL {c_new.baseline_ppl:.4g}; "
            f"baseline: {len(old.neurons)} neuron(s), Δ {c_old.delta:.3f}, baseline PPL {c_old.baseline_ppl:.4g}",
        )
    )
    lines.append(Line(None, None, f"overlap of the critical sets: {shared} shared, Jaccard {jac:.3f}"))
    if new.minimal is not None and old.minimal is not None:
        ms, mj = overlap(new.minimal.neurons, old.minimal.neurons)
        lines.append(Line(None, None, f"overlap of the minimal sets: {ms} shared, Jaccard {mj:.3f}"))
    for value in rules.get("max_size_drop", []):
        lines += _size_lines(new, old, int(value), bool(differ))
    for value in rules.get("max_delta_rise", []):
        flag = BASELINE_RULES["max_delta_rise"][0]
        rise = c_new.delta - c_old.delta
        msg = f"Δ {c_new.delta:.3f} vs baseline {c_old.delta:.3f}: rise {rise:+.3f} <= {value}"
        lines.append(
            Line(flag, None if differ else rise <= value, msg + (": located with different settings" if differ else ""))
        )
    for value in rules.get("min_overlap", []):
        lines.append(
            Line(BASELINE_RULES["min_overlap"][0], jac >= value, f"Jaccard of the critical sets {jac:.3f} >= {value}")
        )
    transfer_rules = {k: v for k, v in rules.items() if k in ("min_transfer_delta", "max_transfer_delta") and v}
    if transfer_rules:
        if load is None:
            raise AchillesError("transfer rules need the two models (they are loaded from the mask files' model names)")
        new_model = load(new, "new")
        old_on_new = transfer_delta(new_model, old.neurons, new)
        del new_model
        old_model = load(old, "baseline")
        new_on_old = transfer_delta(old_model, new.neurons, old)
        del old_model
        lines.append(
            Line(
                None,
                None,
                f"transfer: the baseline's critical set in the new model Δ {old_on_new:.3f}; "
                f"the new set in the baseline model Δ {new_on_old:.3f}",
            )
        )
        for value in transfer_rules.get("min_transfer_delta", []):
            lines.append(
                Line(
                    "--min-transfer-delta",
                    old_on_new >= value,
                    f"baseline set on the new model Δ {old_on_new:.3f} >= {value}",
                )
            )
        for value in transfer_rules.get("max_transfer_delta", []):
            lines.append(
                Line(
                    "--max-transfer-delta",
                    old_on_new <= value,
                    f"baseline set on the new model Δ {old_on_new:.3f} <= {value}",
                )
            )
    return lines


# --------------------------------------------------------------------------- comparisons


def _runs(comparison: dict, cache: dict):
    """The comparison's two lm-eval runs, read once per comparison (None where they cannot be read)."""
    from lm_eval_achilles.comparison.runs import load_run

    key = id(comparison)
    if key not in cache:
        try:
            cache[key] = (load_run(comparison["original"]["folder"]), load_run(comparison["masked"]["folder"]))
        except (AchillesError, KeyError, TypeError, OSError):
            cache[key] = None
    return cache[key]


def _drops(runs, task: str, metric: str, flt: str) -> tuple[list, list] | None:
    """Per-document masked drop (original - masked) of one metric from a comparison's two runs; None where
    they are missing or the values are not numbers."""
    from lm_eval_achilles.comparison.pairing import pair_task

    if runs is None:
        return None
    o, m = runs
    try:
        paired = pair_task(task, o.samples[task], m.samples[task])
    except (AchillesError, KeyError, TypeError):
        return None
    for pm in paired:
        if pm.metric == metric and pm.filter == flt:
            try:
                ov, mv = np.asarray(pm.original, dtype=float), np.asarray(pm.masked, dtype=float)
            except (TypeError, ValueError):
                return None
            return list(pm.doc_ids), list(ov - mv)
    return None


def comparison_lines(new: dict, old: dict, specs: Sequence, iters: int = 10_000, seed: int = 1234) -> list[Line]:
    """``--max-drop-rise TASK:METRIC=VALUE``: per matching row, the new masked drop against the old one's,
    with a paired bootstrap of the difference of mean drops where both runs scored the same documents."""
    flag = BASELINE_COMPARISON_RULES["max_drop_rise"]
    lines = []
    loaded: dict = {}  # each comparison's runs, read once for all its rows
    old_rows = {(r["task"], r["metric"], r.get("filter", "none")): r for r in old["rows"]}
    for spec in specs:
        for row in matching_rows(spec, new, flag):
            key = (row["task"], row["metric"], row.get("filter", "none"))
            label = f"{row['metric']}" + ("" if key[2] == "none" else f",{key[2]}") + f" of {row['task']}"
            if key not in old_rows:
                raise AchillesError(f"{flag} {spec.text!r}: the baseline comparison has no {label}")
            dn, do = degradation(row), degradation(old_rows[key])
            if dn is None or do is None:
                lines.append(Line(flag, None, f"drop of {label}: not a number in one of the comparisons"))
                continue
            rise = dn - do
            test = ""
            if row.get("scale") != "log10":
                a, b = _drops(_runs(new, loaded), *key), _drops(_runs(old, loaded), *key)
                if a is not None and b is not None:
                    sign = -1.0 if row.get("higher_is_better") is False else 1.0
                    common = sorted(set(a[0]) & set(b[0]), key=str)
                    if common:
                        na, nb = dict(zip(*a)), dict(zip(*b))
                        t = paired_bootstrap(
                            [sign * nb[d] for d in common], [sign * na[d] for d in common], iters=iters, seed=seed
                        )
                        if t.ci_low is not None and math.isfinite(t.ci_low):
                            test = f"; paired over {len(common)} documents, 95% CI [{t.ci_low:+.3g}, {t.ci_high:+.3g}]"
            lines.append(
                Line(
                    flag,
                    rise <= spec.value,
                    f"drop of {label} {dn:+.4g} vs baseline {do:+.4g}: rise {rise:+.4g} <= {spec.value}{test}",
                )
            )
    return lines
