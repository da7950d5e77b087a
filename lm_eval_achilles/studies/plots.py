"""Plots the studies need beyond the shared :func:`lm_eval_achilles.plots.ppl_curves` (headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from ..plots import _pyplot


def _finite(y):
    return y if y is not None and math.isfinite(y) else float("nan")


def _save(fig, out) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def panels(specs: Sequence[Mapping], out, suptitle: str = "") -> Path:
    """Side-by-side line plots. Each spec: ``title``, ``xlabel``, ``ylabel``, ``series`` {label: [(x, y)]},
    optional ``hlines`` {label: y}, ``vlines`` {label: x}, ``ylog``, ``xlog`` (symlog), ``annotate`` (label points with text)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(specs), figsize=(4.6 * len(specs), 3.8), squeeze=False)
    for ax, spec in zip(axes[0], specs):
        for label, pts in spec["series"].items():
            ax.plot([p[0] for p in pts], [_finite(p[1]) for p in pts], marker="o", markersize=3, label=label)
        for i, (label, y) in enumerate(spec.get("hlines", {}).items()):
            ax.axhline(y, linestyle=":", color=f"C{(i + 3) % 10}", label=label)
        for i, (label, x) in enumerate(spec.get("vlines", {}).items()):
            ax.axvline(x, linestyle="--", color=f"C{(i + 6) % 10}", label=label)
        if spec.get("ylog"):
            ax.set_yscale("log")
        if spec.get("xlog"):
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
        ax.set_xlabel(spec.get("xlabel", ""))
        ax.set_ylabel(spec.get("ylabel", ""))
        ax.set_title(spec.get("title", ""), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return _save(fig, out)


def bars(labels: Sequence[str], values: Sequence[float], out, ylabel: str = "perplexity (log scale)",
         title: str = "", ylog: bool = True, hline: float | None = None, hline_label: str = "",
         colors: Sequence[str] | None = None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(labels) + 2), 4.2))
    ax.bar(range(len(labels)), [_finite(v) for v in values], color=colors)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle=":", label=hline_label)
        ax.legend(fontsize=8)
    if ylog:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], out, title: str = "",
                 ylabel: str = "perplexity (log scale)", hline: float | None = None, hline_label: str = "") -> Path:
    """One group of bars per entry of ``groups``, one bar per series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.2))
    width = 0.8 / max(1, len(series))
    for i, (label, vals) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], [_finite(v) for v in vals], width, label=label)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups, fontsize=8)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle=":", label=hline_label)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out)


def membership(row_labels: Sequence[str], col_labels: Sequence[str], matrix: Sequence[Sequence[bool]], out,
               title: str = "") -> Path:
    """Which neuron (column) is in which probe's critical set (row)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.5 * len(col_labels) + 3.5), 0.32 * len(row_labels) + 1.8))
    ax.imshow([[1.0 if v else 0.0 for v in r] for r in matrix], cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, out)
