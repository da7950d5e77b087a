"""Score rules' ``TASK:METRIC=VALUE`` specs and the masked drop of a comparison row: shared by the
absolute gate (:mod:`.check`) and the baseline gate (:mod:`.baseline`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lm_eval_achilles.errors import AchillesError


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


def as_number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def degradation(row: dict[str, Any]) -> float | None:
    """How much worse the masked model is (positive = worse), in the row's own units; perplexities in
    orders of magnitude."""
    o, m = as_number(row.get("original")), as_number(row.get("masked"))
    if o is None or m is None:
        return None
    if row.get("scale") == "log10":
        if o <= 0 or m <= 0:
            return None
        return math.log10(m) - math.log10(o)
    return (m - o) if row.get("higher_is_better") is False else (o - m)


def matching_rows(spec: ScoreSpec, comparison: dict[str, Any], flag: str) -> list[dict[str, Any]]:
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
