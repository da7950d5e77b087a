"""Pairing the documents of two runs of one task by ``(filter, doc_id)``: the two conditions must have
scored the same documents, or the comparison is refused with the ids that differ."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval_achilles.errors import AchillesError


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
            out.append(
                PairedMetric(
                    task=task,
                    filter=flt,
                    metric=metric,
                    doc_ids=[k[1] for k in fkeys],
                    original=[a[k][metric] for k in fkeys],
                    masked=[b[k][metric] for k in fkeys],
                )
            )
    return out


def _metric_names(rec: dict[str, Any]) -> list[str]:
    names = rec.get("metrics")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise AchillesError(f"sample of doc_id {rec.get('doc_id')!r} lists no metrics")
