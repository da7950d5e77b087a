"""matplotlib set-up (headless) and figure saving, shared by every plot in the package."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed); imported lazily."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path, tight: bool = True) -> Path:
    """Save ``fig`` as ``out`` (parent folders created, 120 dpi) and close it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(out, dpi=120)
    pyplot().close(fig)
    return out
