"""Shared matplotlib plots (headless). One implementation of each plot; reports and studies call these."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ppl_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    out: str | Path,
    title: str = "",
    threshold_ppl: float | None = None,
    critical_n: int | None = None,
    xlabel: str = "number of masked neurons",
    xlog: bool = False,
) -> Path:
    """Perplexity (log scale) against the number of masked neurons, one line per label.

    ``threshold_ppl`` draws the epsilon threshold as a horizontal line and ``critical_n`` the size of
    the critical set as a vertical dashed line (the paper's Figure 2 and 3)."""
    import math

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pts in curves.items():
        xs = [p[0] for p in pts]
        ys = [p[1] if math.isfinite(p[1]) else float("nan") for p in pts]
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    if threshold_ppl is not None:
        ax.axhline(threshold_ppl, color="gray", linestyle=":", label="threshold (epsilon)")
    if critical_n is not None:
        ax.axvline(critical_n, color="red", linestyle="--", label=f"critical set = {critical_n}")
    ax.set_yscale("log")
    if xlog:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("perplexity (log scale)")
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
