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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.comparison.baseline import (
    BASELINE_RULES,
    baseline_lines,
    comparison_lines,
    tried_size,
)
from lm_eval_achilles.comparison.specs import ScoreSpec, as_number, degradation, matching_rows, parse_spec
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
    """One line of the gate: a rule that holds (True), is violated (False) or cannot be decided from
    what was measured (None, "inconclusive"); ``rule=None`` is information printed beside the rules."""

    rule: str | None
    subject: str
    holds: bool | None
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
            return _not_found(mask, value, "critical")
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
            if name == "min_minimal_size":
                return _not_found(mask, value, "minimal")
            return False, f"no critical set found ({c.stopping_reason}), so no minimal set"
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


def _not_found(mask: MaskFile, value: float, which: str) -> tuple[bool | None, str]:
    """``--min-*-size N`` on a run that found no critical set: no prefix of up to ``tried`` ranking entries
    crossed epsilon, so the set has more than ``tried`` neurons (channel granularity). That proves
    ``>= N`` only when N <= tried + 1; a larger N was never tried: inconclusive, not a pass."""
    tried = tried_size(mask)
    entries = "entries" if mask.locator.get("granularity") == "position" else "neurons"
    bound = tried + 1 if entries == "neurons" else 1  # position entries can repeat a channel
    head = f"no critical set within the {tried} {entries} tried ({mask.critical.stopping_reason})"
    if value <= bound:
        return True, f"{head}: the {which} set has at least {bound} neuron(s) >= {value}"
    fix = (
        "raise or drop --patience"
        if mask.critical.stopping_reason == "patience"
        else "raise --max-steps or widen --modules"
    )
    return None, (f"{head}: inconclusive for {which} set size >= {value} (only sizes up to {tried} were tried; {fix})")


# --------------------------------------------------------------------------- comparison rules


def _comparison_rule(name: str, spec: ScoreSpec, comparison: dict[str, Any]) -> list[tuple[bool, str]]:
    flag, template = COMPARISON_RULES[name]
    out = []
    for row in matching_rows(spec, comparison, flag):
        label = row["metric"] + ("" if row.get("filter", "none") == "none" else f",{row['filter']}")
        desc = template.format(m=label, t=row["task"], v=spec.value)
        if name in ("min_masked_score", "max_masked_score", "min_original_score"):
            x = as_number(row.get("original" if name == "min_original_score" else "masked"))
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
    subjects: Sequence[Subject],
    mask_rules: dict[str, Sequence[float]],
    comparison_rules: dict[str, Sequence[str]],
    baselines: Sequence[Subject] = (),
    baseline_rules: dict[str, Sequence[float]] | None = None,
    baseline_comparison_rules: dict[str, Sequence[str]] | None = None,
    load: Callable | None = None,
    iters: int = 10_000,
) -> list[Outcome]:
    """Evaluate every rule on every input of its kind (and, with ``baselines``, the new inputs against the
    accepted ones: :mod:`.baseline`). Raises :class:`AchillesError` for bad input."""
    mask_rules = {k: [_threshold(k, x) for x in v] for k, v in mask_rules.items() if v}
    comparison_rules = {k: list(v) for k, v in comparison_rules.items() if v}
    baseline_rules = {k: [_baseline_threshold(k, x) for x in v] for k, v in (baseline_rules or {}).items() if v}
    baseline_comparison_rules = {k: list(v) for k, v in (baseline_comparison_rules or {}).items() if v}
    if not (mask_rules or comparison_rules or baseline_rules or baseline_comparison_rules or baselines):
        raise AchillesError("no rules given; see `achilles check --help` for the thresholds you can state")
    masks = [s for s in subjects if s.kind == "mask"]
    comps = [s for s in subjects if s.kind == "comparison"]
    if mask_rules and not masks:
        flags = ", ".join(MASK_RULES[k][0] for k in mask_rules)
        raise AchillesError(f"{flags} apply to a mask file, but no mask file was given")
    if comparison_rules and not comps:
        flags = ", ".join(COMPARISON_RULES[k][0] for k in comparison_rules)
        raise AchillesError(f"{flags} apply to a comparison, but no comparison was given")
    base_masks = [s for s in baselines if s.kind == "mask"]
    base_comps = [s for s in baselines if s.kind == "comparison"]
    if len(base_masks) > 1 or len(base_comps) > 1:
        raise AchillesError(
            "give one baseline mask file and/or one baseline comparison (--baseline, at most once each)"
        )
    if (baseline_rules or base_masks) and not (masks and base_masks):
        what = "a new mask file and a baseline mask file (--baseline OLD_MASK)"
        if baseline_rules:
            flags = ", ".join(BASELINE_RULES[k][0] for k in baseline_rules)
            raise AchillesError(f"{flags} compare {what}; give both")
        raise AchillesError(f"--baseline {base_masks[0].path} is a mask file: give the new mask file too")
    if (baseline_comparison_rules or base_comps) and not (comps and base_comps):
        raise AchillesError("--max-drop-rise and a baseline comparison need a new comparison and a baseline comparison")
    parsed = {
        name: [parse_spec(t, COMPARISON_RULES[name][0]) for t in texts] for name, texts in comparison_rules.items()
    }
    drop_specs = [parse_spec(t, "--max-drop-rise") for t in baseline_comparison_rules.get("max_drop_rise", [])]
    outcomes: list[Outcome] = []
    for subject in masks:
        for name, values in mask_rules.items():
            for value in values:
                ok, msg = _mask_rule(name, value, subject.data)
                outcomes.append(Outcome(MASK_RULES[name][0], str(subject.path), ok, msg))
        for base in base_masks:
            lines = baseline_lines(subject.data, base.data, baseline_rules, str(subject.path), str(base.path), load)
            outcomes += [Outcome(x.rule, f"{subject.path} vs {base.path}", x.holds, x.message) for x in lines]
    for subject in comps:
        for name, specs in parsed.items():
            for spec in specs:
                for ok, msg in _comparison_rule(name, spec, subject.data):
                    outcomes.append(Outcome(COMPARISON_RULES[name][0], str(subject.path), ok, msg))
        for base in base_comps:
            lines = comparison_lines(subject.data, base.data, drop_specs, iters=iters)
            outcomes += [Outcome(x.rule, f"{subject.path} vs {base.path}", x.holds, x.message) for x in lines]
    return outcomes


def _baseline_threshold(name: str, value: Any) -> float:
    flag, kind = BASELINE_RULES[name]
    return as_int(value, flag, minimum=0) if kind is int else as_float(value, flag)


STATUS = {True: "ok  ", False: "FAIL", None: "inconclusive"}


def print_outcomes(outcomes: Sequence[Outcome], write: Callable[[str], None] = print) -> int:
    """One line per rule (ok / FAIL / inconclusive, with the values), information lines indented, then a
    summary; returns the exit code (0 every rule holds, 1 one is violated or cannot be decided)."""
    rules = [o for o in outcomes if o.rule is not None]
    for o in outcomes:
        if o.rule is None:
            write(f"      {o.message}")
        else:
            write(f"{STATUS[o.holds]}  {o.message}  [{o.rule}, {o.subject}]")
    bad = [o for o in rules if o.holds is False]
    undecided = [o for o in rules if o.holds is None]
    if bad:
        more = f", {len(undecided)} inconclusive" if undecided else ""
        write(f"achilles check: {len(bad)} of {len(rules)} rule(s) violated{more}")
        return 1
    if undecided:
        write(f"achilles check: {len(undecided)} of {len(rules)} rule(s) inconclusive (not a pass)")
        return 1
    write(f"achilles check: all {len(rules)} rule(s) hold")
    return 0


def write_junit(outcomes: Sequence[Outcome], path: str | Path) -> Path:
    """A JUnit XML report, one test case per rule (information lines go to the suite's system-out), as
    every CI system shows it: a violated rule is a failure, an inconclusive one a failure of type
    ``inconclusive`` (the gate did not pass)."""
    import xml.etree.ElementTree as ET

    from lm_eval_achilles.jsonio import write_text_atomic

    rules = [o for o in outcomes if o.rule is not None]
    failed = sum(o.holds is not True for o in rules)
    suite = ET.Element("testsuite", name="achilles check", tests=str(len(rules)), failures=str(failed), errors="0")
    for o in rules:
        case = ET.SubElement(suite, "testcase", classname=o.subject, name=f"{o.rule}: {o.message}")
        if o.holds is not True:
            kind = "violated" if o.holds is False else "inconclusive"
            ET.SubElement(case, "failure", type=kind, message=f"{kind}: {o.message}").text = o.message
    info = [o.message for o in outcomes if o.rule is None]
    if info:
        ET.SubElement(suite, "system-out").text = "\n".join(info)
    ET.indent(suite)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    return write_text_atomic(Path(path), text)
