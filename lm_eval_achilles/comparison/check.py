"""``achilles check``: a CI gate over mask files and comparisons.

Each rule states a threshold; the gate *holds* when every rule holds. Exit codes: 0 = all rules hold,
1 = at least one rule is violated, 2 = bad input (unreadable file, unknown task or metric, a rule that
does not apply to any given input, no rules at all).

Rules on a **mask file** (``achilles locate`` output):

=========================  =====================================================================
``--min-critical-size N``  the critical set has at least N neurons (distinct channels). A mask in
                           which no critical set was found within the step cap holds: the model
                           needs more neurons than the locator tried.
``--max-critical-size N``  a critical set was found and has at most N neurons (e.g. "the locator
                           still finds the model's Achilles' heel").
``--min-delta X``          Delta of the critical set = log10(PPL_masked / PPL_original) >= X.
``--max-delta X``          Delta <= X ("masking the set must not blow perplexity up by more than
                           X orders of magnitude").
``--max-baseline-ppl X``   the unmasked perplexity on the probe text is <= X.
``--min-minimal-size N``   the minimal set (``achilles locate --minimize``) has at least N neurons:
                           the stricter robustness gate, since the prefix can overshoot. Holds
                           when no critical set was found (as ``--min-critical-size``); a mask
                           with a critical set but no minimal set is bad input (exit 2).
``--max-minimal-size N``   a minimal set exists and has at most N neurons.
=========================  =====================================================================

Rules on a **comparison** (``comparison.json`` or its folder, from ``achilles compare``/``demo``);
``SPEC`` is ``TASK:METRIC=VALUE``, ``METRIC`` may carry a filter (``exact_match,strict-match``) and
``TASK`` may be ``*`` (every task that reports the metric):

===========================  ===================================================================
``--min-masked-score SPEC``  the masked model's score >= VALUE
``--max-masked-score SPEC``  the masked model's score <= VALUE
``--min-original-score SPEC``  the original model's score >= VALUE
``--max-drop SPEC``          degradation <= VALUE; degradation = original - masked for
                             higher-is-better metrics, masked - original for lower-is-better
                             ones, and for perplexities the orders of magnitude
                             log10(masked / original)
``--min-drop SPEC``          degradation >= VALUE (e.g. "masking must hurt")
===========================  ===================================================================
Every rule flag may be repeated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import MaskFile, mask_from_json
from lm_eval_achilles.validate import as_float, as_int

MASK_RULES = {
    "min_critical_size": ("--min-critical-size", int, "critical set size >= {v}"),
    "max_critical_size": ("--max-critical-size", int, "critical set size <= {v}"),
    "min_delta": ("--min-delta", float, "Delta >= {v}"),
    "max_delta": ("--max-delta", float, "Delta <= {v}"),
    "max_baseline_ppl": ("--max-baseline-ppl", float, "baseline perplexity <= {v}"),
    "min_minimal_size": ("--min-minimal-size", int, "minimal set size >= {v}"),
    "max_minimal_size": ("--max-minimal-size", int, "minimal set size <= {v}"),
}
COMPARISON_RULES = {
    "min_masked_score": ("--min-masked-score", "masked {m} of {t} >= {v}"),
    "max_masked_score": ("--max-masked-score", "masked {m} of {t} <= {v}"),
    "min_original_score": ("--min-original-score", "original {m} of {t} >= {v}"),
    "max_drop": ("--max-drop", "degradation of {m} on {t} <= {v}"),
    "min_drop": ("--min-drop", "degradation of {m} on {t} >= {v}"),
}


@dataclass
class Subject:
    path: Path
    kind: str  # "mask" | "comparison"
    data: Any  # MaskFile | dict


@dataclass
class Outcome:
    rule: str
    subject: str
    holds: bool
    message: str


def load_subject(path: str | Path) -> Subject:
    """A mask file, a ``comparison.json``, or a folder holding ``comparison.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / "comparison.json"
        if not p.is_file():
            raise AchillesError(f"{path}: a folder without comparison.json (give a mask file or a comparison)")
    if not p.is_file():
        raise AchillesError(f"file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AchillesError(f"{p}: malformed JSON ({exc})") from exc
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt == "achilles-mask/1":
        return Subject(p, "mask", mask_from_json(data, str(p)))
    if fmt == "achilles-comparison/1":
        rows = data.get("rows")
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and {"task", "metric", "original", "masked"} <= r.keys() for r in rows
        ):
            raise AchillesError(f"{p}: comparison without valid rows")
        return Subject(p, "comparison", data)
    raise AchillesError(
        f"{p}: neither a mask file (achilles-mask/1) nor a comparison (achilles-comparison/1); format is {fmt!r}"
    )


# --------------------------------------------------------------------------- mask rules


def _mask_rule(name: str, value: float, mask: MaskFile) -> tuple[bool, str]:
    c = mask.critical
    found = c.size > 0
    size = len(mask.neurons)
    if name == "min_critical_size":
        if not found:
            return (
                True,
                f"no critical set within the step cap ({c.stopping_reason}): more than any tried size >= {value}",
            )
        return size >= value, f"critical set size {size} >= {value}"
    if name == "max_critical_size":
        if not found:
            return False, f"no critical set found ({c.stopping_reason}), required size <= {value}"
        return size <= value, f"critical set size {size} <= {value}"
    if name == "min_delta":
        return c.delta >= value, f"Delta {c.delta:.3f} >= {value}"
    if name == "max_delta":
        return c.delta <= value, f"Delta {c.delta:.3f} <= {value}"
    if name == "max_baseline_ppl":
        return c.baseline_ppl <= value, f"baseline perplexity {c.baseline_ppl:.4g} <= {value}"
    if name in ("min_minimal_size", "max_minimal_size"):
        if not found:
            return name == "min_minimal_size", f"no critical set found ({c.stopping_reason}), so no minimal set"
        if mask.minimal is None:
            raise AchillesError(
                f"{MASK_RULES[name][0]} needs a minimal set, and this mask file has none "
                "(write one with `achilles locate --minimize`)"
            )
        m = mask.minimal
        n = len(m.neurons)
        note = "" if m.verified_minimal else f" (not verified minimal: {m.stopping_reason})"
        if name == "min_minimal_size":
            return n >= value, f"minimal set size {n} >= {value}{note}"
        return n <= value, f"minimal set size {n} <= {value}{note}"
    raise AssertionError(name)


# --------------------------------------------------------------------------- comparison rules


@dataclass
class ScoreSpec:
    task: str
    metric: str
    filter: str | None
    value: float
    text: str


def parse_spec(text: str, flag: str) -> ScoreSpec:
    """``TASK:METRIC=VALUE`` (METRIC optionally ``metric,filter``; TASK may be ``*``)."""
    left, sep, value = str(text).rpartition("=")
    task, colon, metric = left.partition(":")
    if not sep or not colon or not task.strip() or not metric.strip():
        raise AchillesError(f"{flag} {text!r}: expected TASK:METRIC=VALUE, e.g. achilles_mmlu_pro:acc=0.2")
    try:
        v = float(value)
    except ValueError:
        raise AchillesError(f"{flag} {text!r}: {value!r} is not a number") from None
    if not math.isfinite(v):
        raise AchillesError(f"{flag} {text!r}: the threshold must be finite")
    metric, comma, flt = metric.strip().partition(",")
    return ScoreSpec(task.strip(), metric.strip(), flt.strip() if comma else None, v, text)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def degradation(row: dict[str, Any]) -> float | None:
    """How much worse the masked model is (positive = worse), in the row's own units; perplexities in
    orders of magnitude."""
    o, m = _num(row.get("original")), _num(row.get("masked"))
    if o is None or m is None:
        return None
    if row.get("scale") == "log10":
        if o <= 0 or m <= 0:
            return None
        return math.log10(m) - math.log10(o)
    return (m - o) if row.get("higher_is_better") is False else (o - m)


def _matching_rows(spec: ScoreSpec, comparison: dict[str, Any], flag: str) -> list[dict[str, Any]]:
    rows = comparison["rows"]
    tasks = {r["task"] for r in rows}
    if spec.task != "*" and spec.task not in tasks:
        raise AchillesError(
            f"{flag} {spec.text!r}: no task {spec.task!r} in the comparison (tasks: {', '.join(sorted(tasks))})"
        )
    hits = [
        r
        for r in rows
        if (spec.task == "*" or r["task"] == spec.task)
        and r["metric"] == spec.metric
        and (spec.filter is None or r.get("filter", "none") == spec.filter)
    ]
    if not hits:
        have = sorted(
            {
                f"{r['metric']}" + ("" if r.get("filter", "none") == "none" else f",{r['filter']}")
                for r in rows
                if spec.task == "*" or r["task"] == spec.task
            }
        )
        raise AchillesError(
            f"{flag} {spec.text!r}: no metric {spec.metric!r} for task {spec.task!r} (metrics: {', '.join(have)})"
        )
    return hits


def _comparison_rule(name: str, spec: ScoreSpec, comparison: dict[str, Any]) -> list[tuple[bool, str]]:
    flag, template = COMPARISON_RULES[name]
    out = []
    for row in _matching_rows(spec, comparison, flag):
        label = row["metric"] + ("" if row.get("filter", "none") == "none" else f",{row['filter']}")
        desc = template.format(m=label, t=row["task"], v=spec.value)
        if name in ("min_masked_score", "max_masked_score", "min_original_score"):
            x = _num(row.get("original" if name == "min_original_score" else "masked"))
            ok = x is not None and (x <= spec.value if name.startswith("max") else x >= spec.value)
            shown = "n/a" if x is None else f"{x:.4g}"
        else:
            x = degradation(row)
            ok = x is not None and (x <= spec.value if name == "max_drop" else x >= spec.value)
            unit = " orders of magnitude" if row.get("scale") == "log10" else ""
            shown = "n/a" if x is None else f"{x:+.4g}{unit}"
        out.append((ok, f"{desc} (is {shown})"))
    return out


# --------------------------------------------------------------------------- running the gate


def _threshold(name: str, value: Any) -> float:
    """A mask rule's threshold: a count >= 0 or a finite number (``nan`` would make every rule fail
    silently as "violated", ``inf`` hold trivially)."""
    flag, kind, _ = MASK_RULES[name]
    return as_int(value, flag, minimum=0) if kind is int else as_float(value, flag)


def run_check(
    subjects: Sequence[Subject], mask_rules: dict[str, Sequence[float]], comparison_rules: dict[str, Sequence[str]]
) -> list[Outcome]:
    """Evaluate every rule on every input of its kind. Raises :class:`AchillesError` for bad input."""
    mask_rules = {k: [_threshold(k, x) for x in v] for k, v in mask_rules.items() if v}
    comparison_rules = {k: list(v) for k, v in comparison_rules.items() if v}
    if not mask_rules and not comparison_rules:
        raise AchillesError("no rules given; see `achilles check --help` for the thresholds you can state")
    masks = [s for s in subjects if s.kind == "mask"]
    comps = [s for s in subjects if s.kind == "comparison"]
    if mask_rules and not masks:
        flags = ", ".join(MASK_RULES[k][0] for k in mask_rules)
        raise AchillesError(f"{flags} apply to a mask file, but no mask file was given")
    if comparison_rules and not comps:
        flags = ", ".join(COMPARISON_RULES[k][0] for k in comparison_rules)
        raise AchillesError(f"{flags} apply to a comparison, but no comparison was given")
    parsed = {
        name: [parse_spec(t, COMPARISON_RULES[name][0]) for t in texts] for name, texts in comparison_rules.items()
    }
    outcomes: list[Outcome] = []
    for subject in masks:
        for name, values in mask_rules.items():
            for value in values:
                ok, msg = _mask_rule(name, value, subject.data)
                outcomes.append(Outcome(MASK_RULES[name][0], str(subject.path), ok, msg))
    for subject in comps:
        for name, specs in parsed.items():
            for spec in specs:
                for ok, msg in _comparison_rule(name, spec, subject.data):
                    outcomes.append(Outcome(COMPARISON_RULES[name][0], str(subject.path), ok, msg))
    return outcomes


def print_outcomes(outcomes: Sequence[Outcome], write: Callable[[str], None] = print) -> int:
    """One line per rule, then a summary; returns the exit code (0 holds, 1 violated)."""
    for o in outcomes:
        write(f"{'ok  ' if o.holds else 'FAIL'}  {o.message}  [{o.rule}, {o.subject}]")
    bad = [o for o in outcomes if not o.holds]
    if bad:
        write(f"achilles check: {len(bad)} of {len(outcomes)} rule(s) violated")
        return 1
    write(f"achilles check: all {len(outcomes)} rule(s) hold")
    return 0
