"""Scoring one metric of a paired task (original score, masked score, difference, paired test) and
comparing two whole runs metric by metric.

The test: exact McNemar for 0/1 metrics, a seeded paired bootstrap otherwise (:mod:`.stats`);
perplexities are compared on the log10 scale."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lm_eval_achilles.comparison.pairing import PairedMetric, pair_task
from lm_eval_achilles.comparison.runs import Run, load_run
from lm_eval_achilles.comparison.stats import PairedTest, is_binary, mcnemar_test, paired_bootstrap
from lm_eval_achilles.errors import AchillesError

FORMAT = "achilles-comparison/1"
LN10 = math.log(10.0)
LN2 = math.log(2.0)

#: Default aggregations of lm-eval's built-in per-document metrics whose values are not plain scores
#: (used when a task's config does not name its aggregation).
_DEFAULT_AGGREGATION = {
    "word_perplexity": "weighted_perplexity",
    "byte_perplexity": "weighted_perplexity",
    "bits_per_byte": "bits_per_byte",
    "perplexity": "perplexity",
}
_PERPLEXITY_AGGREGATIONS = ("weighted_perplexity", "perplexity")


def _aggregation(run: Run, task: str, metric: str) -> str | None:
    for entry in run.task_config(task).get("metric_list", []) or []:
        if isinstance(entry, dict) and entry.get("metric") == metric:
            agg = entry.get("aggregation")
            if isinstance(agg, str) and agg.isidentifier():
                return agg
            if agg is not None:
                break  # a custom function (serialised as text): fall back on the metric's name
    if metric in _DEFAULT_AGGREGATION:
        return _DEFAULT_AGGREGATION[metric]
    if "perplexity" in metric:  # e.g. this package's token_perplexity: (loglikelihood, tokens) pairs
        return "weighted_perplexity"
    return None


def _kind(values: Sequence[Any]) -> str:
    """'binary', 'scalar', 'pair' ([value, weight]), 'list' (variable-length numbers) or 'other'."""
    if all(isinstance(v, (int, float, bool)) and v is not None for v in values):
        return "binary" if is_binary(values) else "scalar"
    if all(isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(x) for x in v) for v in values):
        return "pair"
    if all(isinstance(v, (list, tuple)) and all(_is_num(x) for x in v) for v in values):
        return "list"
    return "other"


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float, bool))


@dataclass
class Row:
    task: str
    metric: str
    filter: str
    n: int
    original: float | None
    masked: float | None
    difference: float | None
    higher_is_better: bool | None
    kind: str
    test: PairedTest
    scale: str = "value"  # what the test's interval is on: "value" or "log10" (perplexities)
    original_stderr: float | None = None
    masked_stderr: float | None = None

    @property
    def label(self) -> str:
        return self.metric if self.filter == "none" else f"{self.metric} ({self.filter})"

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "filter": self.filter,
            "n": self.n,
            "original": _num(self.original),
            "masked": _num(self.masked),
            "difference": _num(self.difference),
            "higher_is_better": self.higher_is_better,
            "kind": self.kind,
            "scale": self.scale,
            "original_stderr": _num(self.original_stderr),
            "masked_stderr": _num(self.masked_stderr),
            "test": {k: _num(v) if isinstance(v, float) else v for k, v in self.test.to_json().items()},
        }


def _num(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _reported(run: Run, task: str, metric: str, flt: str, stderr: bool = False) -> float | None:
    key = f"{metric}{'_stderr' if stderr else ''},{flt}"
    value = (run.results.get("results", {}).get(task, {}) or {}).get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def score_metric(
    pm: PairedMetric,
    aggregation: str | None,
    higher_is_better: bool | None,
    original_reported: float | None = None,
    masked_reported: float | None = None,
    iters: int = 10_000,
    seed: int = 1234,
    level: float = 0.95,
) -> Row:
    """Original score, masked score, difference and the paired test for one (task, filter, metric).

    Scores are lm-eval's reported aggregates when given, else recomputed from the documents. The test:
    McNemar for 0/1 values; otherwise a paired bootstrap of the aggregate - on log10 scale for
    perplexities (so the interval is one of Delta = log10(PPL_masked / PPL_original))."""
    values = list(pm.original) + list(pm.masked)
    kind = _kind(values)
    n = len(pm.doc_ids)
    scale = "value"
    if kind == "binary":
        test = mcnemar_test([float(v) for v in pm.original], [float(v) for v in pm.masked])
        stat = lambda xs: float(np.mean(np.asarray(xs, dtype=float)))  # noqa: E731
    elif kind == "scalar":
        o = np.asarray(pm.original, dtype=float)
        m = np.asarray(pm.masked, dtype=float)
        if aggregation == "perplexity":  # per-document log-likelihoods, aggregated as exp(-mean)
            scale = "log10"
            test = paired_bootstrap(-o / LN10, -m / LN10, iters=iters, seed=seed, level=level)
            stat = lambda xs: math.exp(-float(np.mean(np.asarray(xs, dtype=float))))  # noqa: E731
        else:
            test = paired_bootstrap(o, m, iters=iters, seed=seed, level=level)
            stat = lambda xs: float(np.mean(np.asarray(xs, dtype=float)))  # noqa: E731
    elif kind in ("pair", "list"):
        sides = [_pairs(pm.original, kind), _pairs(pm.masked, kind)]
        log_fn = _pair_statistic(aggregation if kind == "pair" else "mean")
        if kind == "pair" and aggregation in _PERPLEXITY_AGGREGATIONS:
            scale = "log10"

        def boot(idx, which):
            arr = sides[which][idx]
            return log_fn(arr[:, 0].sum(), arr[:, 1].sum())

        test = paired_bootstrap(
            list(range(n)), list(range(n)), iters=max(1, min(iters, 2000)), seed=seed, level=level, statistic=boot
        )

        def stat(xs, _fn=log_fn, _kind=kind, _agg=aggregation):
            arr = _pairs(xs, _kind)
            v = _fn(arr[:, 0].sum(), arr[:, 1].sum())
            return 10.0**v if _kind == "pair" and _agg in _PERPLEXITY_AGGREGATIONS else v
    else:
        test = PairedTest(name="none", n=n, note="per-document values are not numbers; no paired test")
        stat = None
    original = original_reported if original_reported is not None else (stat(pm.original) if stat else None)
    masked = masked_reported if masked_reported is not None else (stat(pm.masked) if stat else None)
    difference = None if original is None or masked is None else masked - original
    if scale == "log10" and original and masked and original > 0 and masked > 0:
        test.extra["delta_log10"] = math.log10(masked) - math.log10(original)
    return Row(
        task=pm.task,
        metric=pm.metric,
        filter=pm.filter,
        n=n,
        original=original,
        masked=masked,
        difference=difference,
        higher_is_better=higher_is_better,
        kind=kind,
        test=test,
        scale=scale,
    )


def _pairs(values: Sequence[Any], kind: str) -> np.ndarray:
    """[n, 2] array of (sum, count) per document: pairs as given, lists as (sum of items, number of items)."""
    if kind == "pair":
        return np.asarray(values, dtype=float).reshape(-1, 2)
    return np.asarray([[float(sum(v)), float(len(v))] for v in values], dtype=float).reshape(-1, 2)


def _pair_statistic(aggregation: str | None):
    """Aggregate of summed (value, weight) pairs. Perplexities on log10 scale: log10 PPL = -sum(ll)/sum(w)/ln 10."""
    if aggregation in _PERPLEXITY_AGGREGATIONS:
        return lambda s, w: -s / w / LN10 if w else float("nan")
    if aggregation == "bits_per_byte":
        return lambda s, w: -s / w / LN2 if w else float("nan")
    return lambda s, w: s / w if w else float("nan")  # weighted mean (micro average)


def _numbers(value: Any) -> list[float]:
    """The numbers inside one document's value (a number, a pair, a list); [] for anything else."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for x in items:
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            pass
    return out


def nonfinite_docs(pm: PairedMetric) -> dict[str, list[Any]]:
    """Doc ids whose value is NaN (in either run) or infinite (and not NaN), for one paired metric."""
    found: dict[str, list[Any]] = {"nan": [], "inf": []}
    for doc_id, o, m in zip(pm.doc_ids, pm.original, pm.masked):
        values = _numbers(o) + _numbers(m)
        if any(math.isnan(v) for v in values):
            found["nan"].append(doc_id)
        elif any(math.isinf(v) for v in values):
            found["inf"].append(doc_id)
    return found


def _nonfinite_warnings(pm: PairedMetric, row: Row) -> list[str]:
    """Name the documents with non-finite scores (they are kept, never dropped) and record them in the
    row's test (``nan_docs``, ``inf_docs``)."""
    found = nonfinite_docs(pm)
    out = []
    where = f"task {pm.task}, {pm.metric}" + ("" if pm.filter == "none" else f" ({pm.filter})")
    if found["nan"]:
        row.test.extra["nan_docs"] = found["nan"]
        out.append(
            f"{where}: {len(found['nan'])} document(s) scored NaN (doc_id {_doc_list(found['nan'])}); "
            "they are kept, so the aggregate and its test are NaN"
        )
    if found["inf"]:
        row.test.extra["inf_docs"] = found["inf"]
        out.append(
            f"{where}: {len(found['inf'])} document(s) scored an infinite value (doc_id {_doc_list(found['inf'])}); "
            "they are kept, so the difference is infinite (NaN where both runs are infinite)"
        )
    return out


def _doc_list(ids: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


#: Settings that must be the same in both runs for the comparison to be fair (checked, then warned).
_SAME_SETTINGS = (
    "limit",
    "batch_size",
    "gen_kwargs",
    "random_seed",
    "numpy_seed",
    "torch_seed",
    "fewshot_seed",
    "bootstrap_iters",
    "device",
)
_SAME_TASK_SETTINGS = ("generation_kwargs", "num_fewshot", "doc_to_text", "target_delimiter", "fewshot_delimiter")


def compare_runs(
    original: Run,
    masked: Run,
    tasks: Sequence[str] | None = None,
    iters: int = 10_000,
    seed: int = 1234,
    level: float = 0.95,
) -> dict[str, Any]:
    """Pair two runs task by task and score every metric (the content of ``comparison.json``)."""
    names = list(tasks) if tasks else sorted(set(original.samples) | set(masked.samples))
    missing = [
        (t, side) for t in names for side, run in (("original", original), ("masked", masked)) if t not in run.samples
    ]
    if missing:
        desc = "; ".join(f"{t} has no samples in the {side} run" for t, side in missing)
        raise AchillesError(f"the runs do not cover the same tasks: {desc}")
    warnings: list[str] = []
    for key in _SAME_SETTINGS:
        a, b = original.config.get(key), masked.config.get(key)
        if a != b:
            warnings.append(f"setting {key} differs: original {a!r}, masked {b!r}")
    rows: list[Row] = []
    for task in names:
        for key in _SAME_TASK_SETTINGS:
            a, b = original.task_config(task).get(key), masked.task_config(task).get(key)
            if a != b:
                warnings.append(f"task {task}: {key} differs between the runs")
        hib = (original.results.get("higher_is_better", {}) or {}).get(task, {}) or {}
        for pm in pair_task(task, original.samples[task], masked.samples[task]):
            row = score_metric(
                pm,
                _aggregation(original, task, pm.metric),
                hib.get(pm.metric),
                _reported(original, task, pm.metric, pm.filter),
                _reported(masked, task, pm.metric, pm.filter),
                iters=iters,
                seed=seed,
                level=level,
            )
            warnings += _nonfinite_warnings(pm, row)
            row.original_stderr = _reported(original, task, pm.metric, pm.filter, stderr=True)
            row.masked_stderr = _reported(masked, task, pm.metric, pm.filter, stderr=True)
            rows.append(row)
    return {
        "format": FORMAT,
        "original": _describe(original),
        "masked": _describe(masked),
        "tests": {
            "binary": "exact McNemar (two-sided)",
            "other": f"paired bootstrap, {level:.0%} percentile interval, seed {seed}",
            "bootstrap_iters": iters,
            "level": level,
            "seed": seed,
        },
        "warnings": warnings,
        "rows": [r.to_json() for r in rows],
    }


def _describe(run: Run) -> dict[str, Any]:
    cfg = run.config
    return {
        "folder": str(run.folder),
        "results_file": str(run.results_file),
        "model": cfg.get("model"),
        "model_args": cfg.get("model_args"),
        "achilles_mask": cfg.get("achilles_mask"),
        "limit": cfg.get("limit"),
        "batch_size": cfg.get("batch_size"),
        "gen_kwargs": cfg.get("gen_kwargs"),
        "random_seed": cfg.get("random_seed"),
        "lm_eval_version": run.results.get("lm_eval_version"),
        "tasks": sorted(run.samples),
    }


def compare_folders(
    original: str | Path,
    masked: str | Path,
    tasks: Sequence[str] | None = None,
    iters: int = 10_000,
    seed: int = 1234,
    level: float = 0.95,
) -> dict[str, Any]:
    return compare_runs(load_run(original), load_run(masked), tasks=tasks, iters=iters, seed=seed, level=level)
