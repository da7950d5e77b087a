"""Reading lm-eval output folders: ``results_*.json`` and the per-document ``samples_<task>_*.jsonl``
that ``lm_eval --output_path DIR --log_samples`` writes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError

_DATE_RE = re.compile(r"^results_(?P<date>.+)\.json$")


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
    found = sorted(
        (p for p in folder.rglob("results_*.json") if _DATE_RE.match(p.name)),
        key=lambda p: _DATE_RE.match(p.name).group("date"),
    )
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
        task = path.name[len("samples_") : -len(suffix)]
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
