"""Original vs masked bar chart of a comparison (headless matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lm_eval_achilles.plotting import pyplot, save_figure


def comparison_bars(rows: Sequence[Mapping], out: str | Path, title: str = "") -> Path:
    """Original vs masked score per task and metric (rows of ``comparison.json``), one panel per kind of
    scale: scores, the answers' fluency (``response_nll``, nats per token) and perplexities (log). Every
    bar is labelled with its value, so a zero shows as "0" rather than as nothing; the legend sits above
    the panels, never over a bar."""
    plt = pyplot()

    def num(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            return float("nan")

    def panel(r):
        if r.get("scale") == "log10":
            return "perplexity (log scale)"
        return "response NLL under the original model (nats/token)" if r["metric"] == "response_nll" else "score"

    names = ["score", "response NLL under the original model (nats/token)", "perplexity (log scale)"]
    groups = [(n, [r for r in rows if panel(r) == n]) for n in names]
    groups = [(n, rs) for n, rs in groups if rs]
    heights = [max(1.2, 0.36 * len(rs) + 0.8) for _, rs in groups]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(8.0, sum(heights) + 1.0), gridspec_kw={"height_ratios": heights}, squeeze=False
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
        log = "log" in name
        ax.barh([v + 0.2 for v in y], orig, height=0.4, color="#1f77b4", label="original")
        ax.barh([v - 0.2 for v in y], mask, height=0.4, color="#d62728", label="masked")
        finite = [v for v in orig + mask if math.isfinite(v) and (v > 0 or not log)]
        top = max(finite, default=1.0)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(finite, default=1.0) / 3, top * 30)
        elif all(math.isnan(v) or 0 <= v <= 1 for v in orig + mask):
            ax.set_xlim(0, 1.12)
        else:
            ax.set_xlim(0, top * 1.15)
        for values, offset, color in ((orig, 0.2, "#1f77b4"), (mask, -0.2, "#d62728")):
            for yi, v in zip(y, values):
                if math.isfinite(v) and (v > 0 or not log):
                    ax.text(v, yi + offset, f" {v:.3g}", va="center", ha="left", fontsize=6.5, color=color)
                elif not math.isfinite(v):
                    ax.text(ax.get_xlim()[0], yi + offset, " n/a", va="center", fontsize=6.5, color=color)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlabel(name)
        ax.grid(True, axis="x", alpha=0.3)
    handles, legend_labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, legend_labels, loc="upper right", ncol=2, fontsize=8, frameon=False)
    if title:
        import textwrap

        fig.suptitle("\n".join(textwrap.wrap(title, 70)), x=0.02, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, out, tight=False)
