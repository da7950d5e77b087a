"""Original vs masked: run both conditions in lm-eval, pair the per-document scores, test, write tables.

Two entry points:

- :func:`run_conditions` evaluates the unmasked original (``top_n=0``) and the masked model with the
  lm-eval model ``achilles_masked``, with identical settings (tasks, limit, seeds, batch size,
  generation settings), each into its own output folder and its own ``--use_cache`` file, with
  ``--log_samples`` on. The folders look exactly like ``lm_eval --output_path DIR --log_samples`` ones.
- :func:`compare_folders` reads two such folders (``results_*.json`` + ``samples_<task>_*.jsonl``, as
  lm-eval writes them), pairs the documents of every task by ``(filter, doc_id)`` and, per task and
  metric, reports the original score, the masked score, their difference and a paired test:
  exact McNemar for 0/1 metrics, a seeded paired bootstrap otherwise (:mod:`lm_eval_achilles.stats`).

:func:`write_comparison` writes ``comparison.json`` (format ``achilles-comparison/1``) and
``comparison.md``. Runs that did not score the same documents are refused with a clear error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import AchillesError
from .stats import PairedTest, is_binary, mcnemar_test, paired_bootstrap

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
_DATE_RE = re.compile(r"^results_(?P<date>.+)\.json$")


# --------------------------------------------------------------------------- reading lm-eval folders


@dataclass
class Run:
    """One lm-eval output folder: the aggregated results and the logged samples per task."""

    folder: Path
    results_file: Path
    results: dict[str, Any]
    samples: dict[str, list[dict[str, Any]]]

    @property
    def config(self) -> dict[str, Any]:
        return self.results.get("config", {}) or {}

    def task_config(self, task: str) -> dict[str, Any]:
        return (self.results.get("configs", {}) or {}).get(task, {}) or {}


def find_results_file(folder: str | Path) -> Path:
    """The newest ``results_<date>.json`` under ``folder`` (lm-eval nests it in a model-named folder)."""
    folder = Path(folder)
    if not folder.exists():
        raise AchillesError(f"lm-eval output folder not found: {folder}")
    if folder.is_file():
        if _DATE_RE.match(folder.name):
            return folder
        raise AchillesError(f"{folder} is not an lm-eval results_<date>.json file or output folder")
    found = sorted((p for p in folder.rglob("results_*.json") if _DATE_RE.match(p.name)),
                   key=lambda p: _DATE_RE.match(p.name).group("date"))
    if not found:
        raise AchillesError(f"no lm-eval results_*.json under {folder} (was it written with --output_path?)")
    return found[-1]


def load_run(folder: str | Path) -> Run:
    """Read a folder written by ``lm_eval --output_path DIR --log_samples`` (or :func:`run_conditions`).

    The samples belonging to the newest results file are those with the same date stamp next to it."""
    results_file = find_results_file(folder)
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AchillesError(f"{results_file}: malformed JSON ({exc})") from exc
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise AchillesError(f"{results_file}: not an lm-eval results file (no 'results' object)")
    date = _DATE_RE.match(results_file.name).group("date")
    samples: dict[str, list[dict[str, Any]]] = {}
    suffix = f"_{date}.jsonl"
    for path in sorted(results_file.parent.glob(f"samples_*{suffix}")):
        task = path.name[len("samples_"): -len(suffix)]
        records = []
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AchillesError(f"{path}:{i}: malformed JSON line ({exc})") from exc
        samples[task] = records
    if not samples:
        raise AchillesError(
            f"no samples_<task>_{date}.jsonl next to {results_file}: the run was made without --log_samples, "
            "so documents cannot be paired"
        )
    return Run(folder=Path(folder), results_file=results_file, results=results, samples=samples)


# --------------------------------------------------------------------------- pairing


@dataclass
class PairedMetric:
    task: str
    filter: str
    metric: str
    doc_ids: list[Any]
    original: list[Any]
    masked: list[Any]


def _doc_key(rec: dict[str, Any], where: str) -> tuple[str, Any]:
    if "doc_id" not in rec:
        raise AchillesError(f"{where}: a sample record has no doc_id (not an lm-eval samples file?)")
    return str(rec.get("filter", "none")), rec["doc_id"]


def _index(records: Sequence[dict[str, Any]], where: str) -> dict[tuple[str, Any], dict[str, Any]]:
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    for rec in records:
        key = _doc_key(rec, where)
        if key in out:
            raise AchillesError(f"{where}: doc_id {key[1]!r} (filter {key[0]}) appears twice")
        out[key] = rec
    return out


def _ids(keys: Iterable[tuple[str, Any]], limit: int = 5) -> str:
    ids = sorted({k[1] for k in keys}, key=lambda x: (str(type(x)), x))
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def pair_task(task: str, original: Sequence[dict[str, Any]], masked: Sequence[dict[str, Any]]) -> list[PairedMetric]:
    """Pair one task's samples by ``(filter, doc_id)``; every document must be in both runs, and the same
    document (``doc_hash``) under the same id. Returns one :class:`PairedMetric` per (filter, metric)."""
    a = _index(original, f"task {task}, original run")
    b = _index(masked, f"task {task}, masked run")
    only_a = a.keys() - b.keys()
    only_b = b.keys() - a.keys()
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len({k[1] for k in only_a})} document(s) only in the original run (doc_id {_ids(only_a)})")
        if only_b:
            parts.append(f"{len({k[1] for k in only_b})} document(s) only in the masked run (doc_id {_ids(only_b)})")
        raise AchillesError(
            f"task {task}: the runs did not score the same documents: {'; '.join(parts)}. "
            "Run both with the same --limit, data and task version."
        )
    if not a:
        raise AchillesError(f"task {task}: no logged documents in either run")
    keys = sorted(a.keys(), key=lambda k: (k[0], str(type(k[1])), k[1]))
    for key in keys:
        ha, hb = a[key].get("doc_hash"), b[key].get("doc_hash")
        if ha is not None and hb is not None and ha != hb:
            raise AchillesError(
                f"task {task}: doc_id {key[1]!r} holds different documents in the two runs (doc_hash "
                f"{str(ha)[:12]} vs {str(hb)[:12]}); the runs used different data"
            )
    out: list[PairedMetric] = []
    filters = sorted({k[0] for k in keys})
    for flt in filters:
        fkeys = [k for k in keys if k[0] == flt]
        metrics = _metric_names(a[fkeys[0]])
        for rec_key in fkeys:
            for side, rec in (("original", a[rec_key]), ("masked", b[rec_key])):
                missing = [m for m in metrics if m not in rec]
                if missing:
                    raise AchillesError(
                        f"task {task}: doc_id {rec_key[1]!r} of the {side} run has no value for {', '.join(missing)}"
                    )
        for metric in metrics:
            out.append(PairedMetric(task=task, filter=flt, metric=metric, doc_ids=[k[1] for k in fkeys],
                                    original=[a[k][metric] for k in fkeys], masked=[b[k][metric] for k in fkeys]))
    return out


def _metric_names(rec: dict[str, Any]) -> list[str]:
    names = rec.get("metrics")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise AchillesError(f"sample of doc_id {rec.get('doc_id')!r} lists no metrics")


# --------------------------------------------------------------------------- scoring one metric


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
            "task": self.task, "metric": self.metric, "filter": self.filter, "n": self.n,
            "original": _num(self.original), "masked": _num(self.masked), "difference": _num(self.difference),
            "higher_is_better": self.higher_is_better, "kind": self.kind, "scale": self.scale,
            "original_stderr": _num(self.original_stderr), "masked_stderr": _num(self.masked_stderr),
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


def score_metric(pm: PairedMetric, aggregation: str | None, higher_is_better: bool | None,
                 original_reported: float | None = None, masked_reported: float | None = None,
                 iters: int = 10_000, seed: int = 1234, level: float = 0.95) -> Row:
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

        test = paired_bootstrap(list(range(n)), list(range(n)), iters=max(1, min(iters, 2000)), seed=seed,
                                level=level, statistic=boot)

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
    return Row(task=pm.task, metric=pm.metric, filter=pm.filter, n=n, original=original, masked=masked,
               difference=difference, higher_is_better=higher_is_better, kind=kind, test=test, scale=scale)


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


# --------------------------------------------------------------------------- comparing two runs

#: Settings that must be the same in both runs for the comparison to be fair (checked, then warned).
_SAME_SETTINGS = ("limit", "batch_size", "gen_kwargs", "random_seed", "numpy_seed", "torch_seed", "fewshot_seed",
                  "bootstrap_iters", "device")
_SAME_TASK_SETTINGS = ("generation_kwargs", "num_fewshot", "doc_to_text", "target_delimiter", "fewshot_delimiter")


def compare_runs(original: Run, masked: Run, tasks: Sequence[str] | None = None, iters: int = 10_000,
                 seed: int = 1234, level: float = 0.95) -> dict[str, Any]:
    """Pair two runs task by task and score every metric (the content of ``comparison.json``)."""
    names = list(tasks) if tasks else sorted(set(original.samples) | set(masked.samples))
    missing = [(t, side) for t in names for side, run in (("original", original), ("masked", masked))
               if t not in run.samples]
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
                pm, _aggregation(original, task, pm.metric), hib.get(pm.metric),
                _reported(original, task, pm.metric, pm.filter), _reported(masked, task, pm.metric, pm.filter),
                iters=iters, seed=seed, level=level)
            row.original_stderr = _reported(original, task, pm.metric, pm.filter, stderr=True)
            row.masked_stderr = _reported(masked, task, pm.metric, pm.filter, stderr=True)
            rows.append(row)
    return {
        "format": FORMAT,
        "original": _describe(original),
        "masked": _describe(masked),
        "tests": {"binary": "exact McNemar (two-sided)", "other": f"paired bootstrap, {level:.0%} percentile "
                  f"interval, seed {seed}", "bootstrap_iters": iters, "level": level, "seed": seed},
        "warnings": warnings,
        "rows": [r.to_json() for r in rows],
    }


def _describe(run: Run) -> dict[str, Any]:
    cfg = run.config
    return {
        "folder": str(run.folder), "results_file": str(run.results_file),
        "model": cfg.get("model"), "model_args": cfg.get("model_args"),
        "achilles_mask": cfg.get("achilles_mask"),
        "limit": cfg.get("limit"), "batch_size": cfg.get("batch_size"), "gen_kwargs": cfg.get("gen_kwargs"),
        "random_seed": cfg.get("random_seed"), "lm_eval_version": run.results.get("lm_eval_version"),
        "tasks": sorted(run.samples),
    }


def compare_folders(original: str | Path, masked: str | Path, tasks: Sequence[str] | None = None,
                    iters: int = 10_000, seed: int = 1234, level: float = 0.95) -> dict[str, Any]:
    return compare_runs(load_run(original), load_run(masked), tasks=tasks, iters=iters, seed=seed, level=level)


# --------------------------------------------------------------------------- writing


def fmt(x: Any) -> str:
    """Compact number: 4 significant digits, scientific for very large/small magnitudes."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4g}"


def _signed(x: Any) -> str:
    s = fmt(x)
    return s if s.startswith("-") or s in ("n/a", "0", "nan") else "+" + s


def format_test(row: dict[str, Any]) -> tuple[str, str]:
    """(test name, result) cells of one row."""
    t = row["test"]
    if t["name"] == "mcnemar-exact":
        return f"McNemar exact (b={t['b']}, c={t['c']})", f"p = {fmt(t['p_value'])}"
    if t["name"] == "paired-bootstrap":
        what = "Δlog10" if row.get("scale") == "log10" else "Δ"
        if "ci_low" not in t:
            return "paired bootstrap", t.get("note", "n/a")
        level = f"{float(t.get('level', 0.95)):.0%}"
        p = t.get("p_value")
        ptxt = f"p < {1 / t['iters']:.1g}" if p == 0 and t.get("iters") else f"p = {fmt(p)}"
        return (f"paired bootstrap ({t.get('iters')}x)",
                f"{what} {level} CI [{fmt(t['ci_low'])}, {fmt(t['ci_high'])}], {ptxt}")
    return "none", t.get("note", "")


def _arrow(hib: Any) -> str:
    return " ↑" if hib is True else (" ↓" if hib is False else "")


def markdown_table(comparison: dict[str, Any]) -> str:
    lines = ["| task | metric | n | original | masked | masked − original | test | result |",
             "|---|---|--:|--:|--:|--:|---|---|"]
    for r in comparison["rows"]:
        label = r["metric"] if r["filter"] == "none" else f"{r['metric']} ({r['filter']})"
        name, result = format_test(r)
        lines.append(f"| {r['task']} | {label}{_arrow(r['higher_is_better'])} | {r['n']} | {fmt(r['original'])} | "
                     f"{fmt(r['masked'])} | {_signed(r['difference'])} | {name} | {result} |")
    return "\n".join(lines)


def text_table(comparison: dict[str, Any]) -> str:
    """Plain-text version of the table for the terminal."""
    header = ("task", "metric", "n", "original", "masked", "diff", "test")
    rows = []
    for r in comparison["rows"]:
        label = r["metric"] if r["filter"] == "none" else f"{r['metric']} ({r['filter']})"
        name, result = format_test(r)
        short = {"mcnemar-exact": "McNemar ", "paired-bootstrap": "bootstrap "}.get(r["test"]["name"], "")
        result = short + result
        rows.append((r["task"], label + _arrow(r["higher_is_better"]), str(r["n"]), fmt(r["original"]),
                     fmt(r["masked"]), _signed(r["difference"]), result))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def _mask_line(desc: dict[str, Any]) -> str:
    m = desc.get("achilles_mask") or {}
    if not m:
        return "no achilles_mask provenance in the results (not an achilles_masked run)"
    if not m.get("masked"):
        return "unmasked (original)"
    mods = ", ".join(m.get("modules", [])[:4])
    neurons = m.get("neurons") or []
    shown = ", ".join(f"{mod} ch {ch}" for mod, ch in neurons[:5])
    return (f"{m.get('n_channels')} neuron(s) masked ({shown or mods}), scale {m.get('scale')}, apply {m.get('apply')}, "
            f"mask {m.get('mask_file')}")


def comparison_markdown(comparison: dict[str, Any], title: str = "Original vs masked", notes: Sequence[str] = ()) -> str:
    o, m = comparison["original"], comparison["masked"]
    lines = [f"# {title}", ""]
    lines.append(f"- original: `{o.get('model')}` {_args(o.get('model_args'))} — {_mask_line(o)}")
    lines.append(f"- masked: `{m.get('model')}` {_args(m.get('model_args'))} — {_mask_line(m)}")
    lines.append(f"- settings (both runs): limit {o.get('limit')}, batch size {o.get('batch_size')}, "
                 f"gen_kwargs {o.get('gen_kwargs') or 'task defaults'}, seed {o.get('random_seed')}, "
                 f"lm-eval {o.get('lm_eval_version')}")
    t = comparison["tests"]
    lines.append(f"- tests: 0/1 metrics: {t['binary']}; other metrics: {t['other']} "
                 f"({t['bootstrap_iters']} resamples; perplexities on log10 scale)")
    for note in notes:
        lines.append(f"- {note}")
    lines += ["", markdown_table(comparison), ""]
    lines.append("↑ higher is better, ↓ lower is better. McNemar: b = documents right originally and wrong "
                 "masked, c = the reverse.")
    if comparison.get("warnings"):
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in comparison["warnings"]]
    return "\n".join(lines) + "\n"


def _args(model_args: Any) -> str:
    if isinstance(model_args, dict):
        return "(" + ", ".join(f"{k}={v}" for k, v in model_args.items()) + ")"
    return f"({model_args})" if model_args else ""


def write_comparison(comparison: dict[str, Any], out_dir: str | Path, title: str = "Original vs masked",
                     notes: Sequence[str] = (), plot: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "comparison.json", "md": out / "comparison.md"}
    paths["json"].write_text(json.dumps(comparison, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if plot and comparison["rows"]:
        from .plots import comparison_bars

        paths["plot"] = comparison_bars(comparison["rows"], out / "comparison.png", title=title)
    md = comparison_markdown(comparison, title=title, notes=notes)
    if "plot" in paths:
        md += f"\n![original vs masked]({paths['plot'].name})\n"
    paths["md"].write_text(md, encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- running both conditions


def task_dir() -> Path | None:
    """This package's lm-eval task folder (installed as package data, or task_configs/ in a checkout)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "task_configs", here.parent / "task_configs"):
        if cand.is_dir() and any(cand.rglob("*.yaml")):
            return cand
    return None


@dataclass
class RunSettings:
    """Everything both conditions share (so they are evaluated identically)."""

    tasks: list[str]
    limit: int | float | None = None
    batch_size: int | str = 1
    gen_kwargs: str | None = None
    seed: int = 1234
    device: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    include_path: list[str] = field(default_factory=list)
    use_cache: bool = True
    num_fewshot: int | None = None
    confirm_run_unsafe_code: bool = False


def model_args_for(base: dict[str, Any], mask_path: str | Path | None, masked: bool, top_n: int | None = None) -> dict[str, Any]:
    """``achilles_masked`` arguments of one condition: the original is ``top_n=0`` (unmasked)."""
    args = {k: v for k, v in base.items() if v is not None}
    if mask_path is not None:
        args["mask"] = str(mask_path)
    if not masked:
        args["top_n"] = 0
    elif top_n is not None:
        args["top_n"] = int(top_n)
    return args


def make_task_manager(settings: RunSettings, model_args: dict[str, Any] | None = None):
    """A TaskManager over this package's tasks (+ ``include_path``). lm-eval's ~14 000 built-in task files
    are indexed only when a requested task is not found among ours (indexing them takes 20-40 s on a CPU).

    As ``simple_evaluate`` does when it builds the TaskManager itself, the model arguments are merged
    into the task metadata (the perplexity tasks read ``pretrained`` from there for their tokenizer)."""
    from lm_eval.tasks import TaskManager

    metadata = {k: v for k, v in (model_args or {}).items() if v is not None} | dict(settings.metadata or {})
    include = [str(p) for p in settings.include_path]
    own = task_dir()
    if own is not None and str(own) not in include:
        include.append(str(own))
    if include:
        tm = TaskManager(include_path=include, include_defaults=False, metadata=metadata or None)
        if all(t in tm.all_tasks for t in settings.tasks):
            return tm
    return TaskManager(include_path=include or None, metadata=metadata or None)


def run_condition(model: str, model_args: dict[str, Any], settings: RunSettings, out_dir: str | Path,
                  cache_path: str | Path | None, task_manager=None) -> Path:
    """One ``lm_eval`` run (in process) with ``--log_samples``, saved exactly like the lm_eval CLI saves it."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    if model == "achilles_masked":
        from . import lm_model  # noqa: F401  (registers achilles_masked)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task_manager = task_manager or make_task_manager(settings, model_args)
    tracker = EvaluationTracker(output_path=str(out_dir))
    if cache_path is not None:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    results = lm_eval.simple_evaluate(
        model=model, model_args=dict(model_args), tasks=list(settings.tasks), num_fewshot=settings.num_fewshot,
        batch_size=settings.batch_size, device=settings.device, limit=settings.limit,
        use_cache=str(cache_path) if cache_path is not None else None, log_samples=True,
        evaluation_tracker=tracker, gen_kwargs=settings.gen_kwargs, task_manager=task_manager,
        random_seed=settings.seed, numpy_random_seed=settings.seed, torch_random_seed=settings.seed,
        fewshot_random_seed=settings.seed, confirm_run_unsafe_code=settings.confirm_run_unsafe_code,
        metadata=settings.metadata or None,
    )
    if results is None:
        raise AchillesError("lm-eval returned no results")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return out_dir


def run_conditions(base_model_args: dict[str, Any], mask_path: str | Path, settings: RunSettings,
                   out_dir: str | Path, model: str = "achilles_masked", top_n: int | None = None) -> tuple[Path, Path]:
    """Evaluate the original and the masked model into ``out_dir/original`` and ``out_dir/masked``, each
    with its own cache file under ``out_dir/cache``. Returns the two folders."""
    out = Path(out_dir)
    folders = []
    for name, is_masked in (("original", False), ("masked", True)):
        folder = out / name
        if folder.exists() and any(folder.rglob("results_*.json")):
            raise AchillesError(f"{folder} already holds lm-eval results; choose a fresh --out folder")
        cache = out / "cache" / name if settings.use_cache else None
        args = model_args_for(base_model_args, mask_path, is_masked, top_n)
        folders.append(run_condition(model, args, settings, folder, cache))
    return folders[0], folders[1]
