"""The paper's figures (headless matplotlib): perplexity curves, layer x module bars, the answer-token
curve, and the panels, bars and membership grids of the studies. One implementation of each plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.ticker import FuncFormatter, MaxNLocator

from lm_eval_achilles.plotting import pyplot, save_figure


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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pts in curves.items():
        xs = [p[0] for p in pts]
        ys = [p[1] if math.isfinite(p[1]) else float("nan") for p in pts]
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    if threshold_ppl is not None:
        ax.axhline(threshold_ppl, color="gray", linestyle=":", label=f"threshold ε: perplexity {threshold_ppl:.3g}")
    if critical_n is not None:
        ax.axvline(critical_n, color="red", linestyle="--", label=f"critical set = {critical_n}")
    ax.set_yscale("log")
    if xlog:
        ax.set_xscale("symlog", linthresh=1)
        if all(p[0] >= 0 for pts in curves.values() for p in pts):
            ax.set_xlim(left=0)  # symlog would otherwise show an empty negative half
    ax.set_xlabel(xlabel)
    ax.set_ylabel("perplexity (log scale)")
    if not xlog:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(_wrap(title), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    # below the axes: a legend inside would cover the curve where it rises (Gemma's does)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return save_figure(fig, out)


def _wrap(title: str, width: int = 62) -> str:
    """A long title (a model's full display name) on two lines instead of cut off at the figure edge."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width)) if len(title) > width else title


def token_label(token: str) -> str:
    """A token as it is, spaces made visible (" Paris" -> "␣Paris"), control characters escaped ("\\n"),
    so two tokens that differ only in a leading space never look alike and none is blank."""
    shown = repr(token)[1:-1].replace(" ", "␣")
    return shown or "(empty)"


def layer_module_bars(
    counts: Mapping[int, Mapping[str, int]],
    n_layers: int,
    out: str | Path,
    title: str = "",
    highlight: str = "down_proj",
) -> Path:
    """Critical neurons per layer, stacked by module kind (the bar half of the paper's Figure 2).

    ``counts[layer][kind]`` is the number of critical neurons of module kind ``kind`` (e.g.
    ``mlp.down_proj``) in ``layer``. Kinds containing ``highlight`` are blue, the rest orange shades,
    as in the paper; every layer 0..n_layers-1 gets a slot so the position in depth is visible."""
    plt = pyplot()
    kinds = sorted({k for per in counts.values() for k in per}, key=lambda k: (highlight not in k, k))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    layers = list(range(max(n_layers, max(counts, default=-1) + 1)))
    bottom = [0] * len(layers)
    others = ["#ff7f0e", "#ffbb78", "#d62728", "#8c564b", "#e377c2", "#bcbd22"]
    j = 0
    for kind in kinds:
        heights = [counts.get(layer, {}).get(kind, 0) for layer in layers]
        if highlight in kind:
            color = "#1f77b4"
        else:
            color = others[j % len(others)]
            j += 1
        ax.bar(layers, heights, bottom=bottom, color=color, label=kind, width=0.8)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlim(-0.7, len(layers) - 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("critical neurons")
    top = max(bottom, default=0)
    ax.set_ylim(0, max(1, top) * 1.25)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if title:
        ax.set_title(title)
    if kinds:
        ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, out)


def answer_token_curve(
    steps: Sequence[Mapping],
    out: str | Path,
    answer: str,
    critical_n: int | None = None,
    title: str = "",
    top_k: int = 6,
) -> Path:
    """The paper's Figure 1 for one model: probability and rank of the answer token as neurons are
    masked one by one (left), and the top next-token probabilities before masking and with the
    critical set masked (right).

    ``steps`` are dicts with ``n`` (neurons masked), ``prob``, ``rank`` (1 = top) and ``top`` (a list of
    ``[token, prob]``, most probable first)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.8), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    ax = axes[0]
    ns = [s["n"] for s in steps]
    ax.plot(ns, [max(s["prob"], 1e-30) for s in steps], marker="o", color="#1f77b4", label=f"P({token_label(answer)})")
    ax.set_yscale("log")
    ax.set_xlabel("number of masked neurons")
    ax.set_ylabel("probability (log)", color="#1f77b4")
    ax2 = ax.twinx()
    ax2.plot(ns, [s["rank"] for s in steps], marker="s", color="#d62728", label="rank")
    ax2.set_yscale("log")
    ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # ranks are integers: 1, 10, 100
    ax2.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v in (2, 3, 5, 20, 50) else ""))
    ax2.invert_yaxis()
    ax2.set_ylabel("rank (1 = top, log)", color="#d62728")
    if critical_n is not None:
        ax.axvline(critical_n, color="gray", linestyle="--", label=f"critical set = {critical_n}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))  # not one tick per step: they ran together
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower left")
    ax.set_title(_wrap(title or f"answer token {token_label(answer)}", 55), fontsize=9)
    chosen = [steps[0]]
    if critical_n is not None:
        chosen += [s for s in steps if s["n"] == critical_n][:1]
    else:
        chosen.append(steps[-1])
    for axis, step in zip(axes[1:], chosen):
        top = list(step["top"])[:top_k]
        labels = [token_label(t) for t, _ in top][::-1]
        probs = [p for _, p in top][::-1]
        colors = ["#2ca02c" if t == answer else "#7f7f7f" for t, _ in top][::-1]
        axis.barh(range(len(top)), probs, color=colors)
        axis.set_yticks(range(len(top)))
        axis.set_yticklabels(labels, fontsize=8)
        axis.set_xlim(0, 1)
        axis.set_xlabel("next-token probability")
        axis.set_title(f"{step['n']} masked: P={step['prob']:.3g}, rank {step['rank']}", fontsize=9)
    return save_figure(fig, out)


# ------------------------------------------------------------------ study plots


def _finite(y):
    return y if y is not None and math.isfinite(y) else float("nan")


def panels(specs: Sequence[Mapping], out, suptitle: str = "") -> Path:
    """Side-by-side line plots. Each spec: ``title``, ``xlabel``, ``ylabel``, ``series`` {label: [(x, y)]},
    optional ``hlines`` {label: y}, ``vlines`` {label: x}, ``ylog``, ``xlog`` (symlog), ``annotate`` (label points with text)."""
    plt = pyplot()
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
    return save_figure(fig, out)


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    out,
    ylabel: str = "perplexity (log scale)",
    title: str = "",
    ylog: bool = True,
    hline: float | None = None,
    hline_label: str = "",
    colors: Sequence[str] | None = None,
) -> Path:
    plt = pyplot()
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
    return save_figure(fig, out)


def membership(
    row_labels: Sequence[str], col_labels: Sequence[str], matrix: Sequence[Sequence[bool]], out, title: str = ""
) -> Path:
    """Which neuron (column) is in which probe's critical set (row)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.5 * len(col_labels) + 3.5), 0.32 * len(row_labels) + 1.8))
    ax.imshow([[1.0 if v else 0.0 for v in r] for r in matrix], cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=7)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, out)
