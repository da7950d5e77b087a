"""Original vs masked bar chart of a comparison (headless matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lm_eval_achilles.plotting import pyplot, save_figure


def comparison_bars(rows: Sequence[Mapping], out: str | Path, title: str = "") -> Path:
    """Original vs masked score per task and metric (rows of ``comparison.json``). Perplexity-like rows
    (log10 scale) get their own log-scaled panel; everything else shares a linear one."""
    plt = pyplot()

    def num(x):
        try:
            x = float(x)
        except (TypeError, ValueError):
            return float("nan")
        return x

    groups = [
        ("score", [r for r in rows if r.get("scale") != "log10"]),
        ("perplexity (log scale)", [r for r in rows if r.get("scale") == "log10"]),
    ]
    groups = [(name, rs) for name, rs in groups if rs]
    heights = [max(1.2, 0.32 * len(rs) + 0.8) for _, rs in groups]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(7.5, sum(heights) + 0.6), gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    for ax, (name, rs) in zip(axes[:, 0], groups):
        labels = [
            f"{r['task'].replace('achilles_', '')}: {r['metric']}"
            + ("" if r.get("filter", "none") == "none" else f" ({r['filter']})")
            for r in rs
        ][::-1]
        orig = [num(r.get("original")) for r in rs][::-1]
        mask = [num(r.get("masked")) for r in rs][::-1]
        y = list(range(len(rs)))
        ax.barh([v + 0.2 for v in y], orig, height=0.4, color="#1f77b4", label="original")
        ax.barh([v - 0.2 for v in y], mask, height=0.4, color="#d62728", label="masked")
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        if "log" in name:
            ax.set_xscale("log")
        elif all(math.isnan(v) or 0 <= v <= 1 for v in orig + mask):
            ax.set_xlim(0, 1)
        ax.set_xlabel(name)
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    if title:
        axes[0, 0].set_title(title)
    return save_figure(fig, out)
