"""Reproductions of the paper's comparison and ablation studies (``achilles study NAME``).

One small module per study, each with ``TITLE`` and ``run(ctx) -> StudyResult``; the shared context,
batched evaluation and the writer live in :mod:`.common`. Every study runs on any model the locator
accepts and writes ``<out>/<name>/README.md`` (command + table), ``<name>.json`` and a plot.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import markdown_table
from lm_eval_achilles.jsonio import write_text_atomic

#: In the order ``all`` runs them (the long locate sweeps last; rankings and the critical set are shared).
STUDIES = ["methods", "components", "threshold", "subsets", "scaling", "precision", "probes", "sensitivity"]


def get_study(name: str):
    if name not in STUDIES:
        raise AchillesError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)} or all")
    return importlib.import_module(f"{__name__}.{name}")


def run_study(name: str, ctx) -> Path:
    """Run one study and write its outputs; returns the study folder."""
    from lm_eval_achilles.paper.studies.common import write_result

    module = get_study(name)
    start = time.perf_counter()
    result = module.run(ctx)
    return write_result(result, ctx, time.perf_counter() - start)


def write_index(ctx, names, seconds: dict[str, float] | None = None) -> Path:
    """``<out>/README.md``: one line per study with its folder and the command that made it."""
    out = Path(ctx.out)
    lines = ["# Studies", "", f"Model: {ctx.loaded.display_name}", ""]
    if ctx.command:
        lines += ["Command:", "", "```", ctx.command, "```", ""]
    rows = []
    for n in names:
        t = f" ({seconds[n]:.0f} s)" if seconds and n in seconds else ""
        rows.append((f"[{n}]({n}/README.md)", get_study(n).TITLE + t, f"{n}/README.md, {n}/{n}.json, plot"))
    lines.append(markdown_table(("study", "what", "outputs"), rows))
    return write_text_atomic(out / "README.md", "\n".join(lines) + "\n")
