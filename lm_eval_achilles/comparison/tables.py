"""Writing a comparison: the markdown and terminal tables, ``comparison.json`` (format
``achilles-comparison/1``) and ``comparison.md`` with its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_eval_achilles import formatting
from lm_eval_achilles.formatting import fmt, signed
from lm_eval_achilles.jsonio import write_json_atomic, write_text_atomic


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
        return (
            f"paired bootstrap ({t.get('iters')}x)",
            f"{what} {level} CI [{fmt(t['ci_low'])}, {fmt(t['ci_high'])}], {ptxt}",
        )
    return "none", t.get("note", "")


def _arrow(hib: Any) -> str:
    return " ↑" if hib is True else (" ↓" if hib is False else "")


def comparison_table(comparison: dict[str, Any]) -> str:
    """The comparison as one markdown table, a row per task, metric and filter."""
    rows = []
    for r in comparison["rows"]:
        label = r["metric"] if r["filter"] == "none" else f"{r['metric']} ({r['filter']})"
        name, result = format_test(r)
        rows.append(
            (
                r["task"],
                label + _arrow(r["higher_is_better"]),
                r["n"],
                fmt(r["original"]),
                fmt(r["masked"]),
                signed(r["difference"]),
                name,
                result,
            )
        )
    columns = ("task", "metric", "n", "original", "masked", "masked − original", "test", "result")
    return formatting.markdown_table(columns, rows, align="llrrrrll")


def text_table(comparison: dict[str, Any]) -> str:
    """Plain-text version of the table for the terminal."""
    header = ("task", "metric", "n", "original", "masked", "diff", "test")
    rows = []
    for r in comparison["rows"]:
        label = r["metric"] if r["filter"] == "none" else f"{r['metric']} ({r['filter']})"
        name, result = format_test(r)
        short = {"mcnemar-exact": "McNemar ", "paired-bootstrap": "bootstrap "}.get(r["test"]["name"], "")
        result = short + result
        rows.append(
            (
                r["task"],
                label + _arrow(r["higher_is_better"]),
                str(r["n"]),
                fmt(r["original"]),
                fmt(r["masked"]),
                signed(r["difference"]),
                result,
            )
        )
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
    if len(neurons) > 5 or (m.get("n_channels") or 0) > 5:
        shown += f", … ({m.get('n_channels')} in all)"
    return (
        f"{m.get('n_channels')} neuron(s) masked ({shown or mods}), scale {m.get('scale')}, apply {m.get('apply')}, "
        f"mask {m.get('mask_file')}"
    )


def comparison_markdown(
    comparison: dict[str, Any], title: str = "Original vs masked", notes: Sequence[str] = ()
) -> str:
    o, m = comparison["original"], comparison["masked"]
    lines = [f"# {title}", ""]
    lines.append(f"- original: `{o.get('model')}` {_args(o.get('model_args'))} — {_mask_line(o)}")
    lines.append(f"- masked: `{m.get('model')}` {_args(m.get('model_args'))} — {_mask_line(m)}")
    lines.append(
        f"- settings (both runs): limit {o.get('limit')}, batch size {o.get('batch_size')}, "
        f"gen_kwargs {o.get('gen_kwargs') or 'task defaults'}, seed {o.get('random_seed')}, "
        f"lm-eval {o.get('lm_eval_version')}"
    )
    t = comparison["tests"]
    lines.append(
        f"- tests: 0/1 metrics: {t['binary']}; other metrics: {t['other']} "
        f"({t['bootstrap_iters']} resamples; perplexities on log10 scale)"
    )
    for note in notes:
        lines.append(f"- {note}")
    lines += ["", comparison_table(comparison), ""]
    lines.append(
        "↑ higher is better, ↓ lower is better. McNemar: b = documents right originally and wrong "
        "masked, c = the reverse."
    )
    if comparison.get("warnings"):
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in comparison["warnings"]]
    return "\n".join(lines) + "\n"


def _args(model_args: Any) -> str:
    if isinstance(model_args, dict):
        return "(" + ", ".join(f"{k}={v}" for k, v in model_args.items()) + ")"
    return f"({model_args})" if model_args else ""


def write_comparison(
    comparison: dict[str, Any],
    out_dir: str | Path,
    title: str = "Original vs masked",
    notes: Sequence[str] = (),
    plot: bool = True,
) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "comparison.json", "md": out / "comparison.md"}
    # standard JSON: inf/nan as the strings "inf"/"nan" (jsonio), which `achilles check` reads back as floats
    write_json_atomic(paths["json"], comparison)
    if plot and comparison["rows"]:
        from lm_eval_achilles.comparison.plots import comparison_bars

        paths["plot"] = comparison_bars(comparison["rows"], out / "comparison.png", title=title)
    md = comparison_markdown(comparison, title=title, notes=notes)
    if "plot" in paths:
        md += f"\n![original vs masked]({paths['plot'].name})\n"
    write_text_atomic(paths["md"], md)
    return paths
