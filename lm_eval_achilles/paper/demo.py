"""``achilles demo``: the whole story on one model (the embedded SmolLM2-135M-Instruct unless ``model`` names
another), offline, in minutes on a CPU.

locate (the paper's two stages) -> report (Figures 1 and 2, before/after responses) -> compare (original
vs masked in lm-eval on the packaged sample documents, paired tests) -> the comparison table and the plot paths.

To fit a few minutes on two CPU cores the demo evaluates a few documents per task (``limit``) and caps
generation at ``max_gen_toks`` new tokens (the tasks' own settings are 50/512). Both are printed and
written into ``demo.md``; ``achilles compare`` without them runs the full protocol.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import code_cell, markdown_table
from lm_eval_achilles.jsonio import write_text_atomic
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.resources import sample_data_dir
from lm_eval_achilles.validate import check_output

DEFAULT_TASKS = ("achilles", "achilles_ppl")


@dataclass
class DemoConfig:
    out: Path = Path("achilles-demo")
    model: str | None = None  # None = the embedded model; a named model (gemma-3-270m), hub id or folder
    tasks: tuple[str, ...] = DEFAULT_TASKS
    limit: int | None = None  # all fixture documents (4-9 per task)
    max_gen_toks: int | None = 50
    batch_size: int = 64  # one batch per condition: few sequential decoding steps on a CPU
    data_dir: Path | None = None  # None = the sample documents shipped in the package
    mask: Path | None = None  # reuse a mask instead of locating
    locator: LocatorConfig | None = None  # the locator's settings (None: the paper's)
    seed: int = 1234
    extra_steps: int = 4
    max_new_tokens: int = 32
    bootstrap_iters: int = 10_000
    progress: bool = True
    command: str = "achilles demo"  # recorded in demo.md
    overwrite: bool = False  # replace the results of an earlier demo run in ``out``


@dataclass
class DemoResult:
    mask_path: Path
    report: dict[str, Path]
    comparison: dict[str, Any]
    comparison_paths: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    demo_md: Path | None = None


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print, summary: Callable | None = None) -> DemoResult:
    """The demo end to end; ``log`` prints the steps, ``summary(mask, model_name, path)`` the located set."""
    from lm_eval_achilles.comparison.conditions import RESULT_FOLDERS, RunSettings, checked_task_manager
    from lm_eval_achilles.comparison.workflow import compare_model, locate_to_file
    from lm_eval_achilles.mask.mask_file import load_mask, save_mask
    from lm_eval_achilles.models.loading import load_model
    from lm_eval_achilles.paper.report import build_report

    out = Path(cfg.out)
    data_dir = cfg.data_dir or sample_data_dir()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise AchillesError(f"--data-dir {data_dir} is not a folder")
    if cfg.mask is not None and not Path(cfg.mask).is_file():
        raise AchillesError(f"mask file not found: {cfg.mask}")
    earlier = [f"compare/{name}" for name in (*RESULT_FOLDERS, "comparison.json")]
    check_output(out, results=earlier, overwrite=cfg.overwrite)  # before minutes of locating, not after
    gen = f"max_gen_toks={cfg.max_gen_toks}" if cfg.max_gen_toks else None
    settings = RunSettings(
        tasks=list(cfg.tasks),
        limit=cfg.limit,
        batch_size=cfg.batch_size,
        gen_kwargs=gen,
        seed=cfg.seed,
        device="cpu",
        metadata={"data_dir": str(data_dir)},
    )
    checked_task_manager(settings)  # an unknown task fails now, not after locating
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    log(f"[1/4] loading {cfg.model or 'the embedded model (SmolLM2-135M-Instruct)'} (float32, CPU)")
    t = time.perf_counter()
    loaded = load_model(cfg.model, dtype="float32", device="cpu")
    title = loaded.display_name
    timings["load"] = time.perf_counter() - t

    mask_path = out / "mask.json"
    t = time.perf_counter()
    if cfg.mask is not None:
        log(f"[2/4] using the given mask {cfg.mask}")
        mask = load_mask(cfg.mask)
        save_mask(mask, mask_path)
    else:
        rc = LocatorConfig.build(cfg.locator, progress=cfg.progress)
        log(f"[2/4] locating the critical neurons ({rc.method}, K={rc.samples}, seed {rc.seed})")
        mask = locate_to_file(loaded, rc, mask_path, summary=summary)
    timings["locate"] = time.perf_counter() - t
    if mask.critical.size == 0:
        raise AchillesError("the locator found no critical set; nothing to compare")

    log("[3/4] report: phase transition, layer x module, answer token, before/after responses")
    t = time.perf_counter()
    report = build_report(
        mask,
        out / "report",
        loaded=loaded,
        model_name=loaded.display_name,
        extra_steps=cfg.extra_steps,
        max_new_tokens=cfg.max_new_tokens,
        mask_path=mask_path,
    )
    timings["report"] = time.perf_counter() - t
    del loaded

    log(
        f"[4/4] lm-eval, original vs masked: tasks {','.join(cfg.tasks)}, limit {cfg.limit} per task, "
        f"{gen or 'task generation lengths'}, batch size {cfg.batch_size}, data {data_dir}"
    )
    t = time.perf_counter()
    docs = f"{cfg.limit or 'all'} document(s) per task from {data_dir.name}/ (fixture data)"
    notes = [
        f"demo settings: {docs}, generation capped at {cfg.max_gen_toks} new tokens (tasks' own: 50 for "
        "MMLU-Pro/GPQA/SimpleQA, 512 otherwise)"
        if cfg.max_gen_toks
        else f"demo settings: {docs}"
    ]
    compared = compare_model(
        {"pretrained": cfg.model or "embedded", "dtype": "float32"},
        mask_path,
        settings,
        out / "compare",
        overwrite=cfg.overwrite,
        iters=cfg.bootstrap_iters,
        title=f"{title}: original vs masked",
        notes=notes,
    )
    timings["compare"] = time.perf_counter() - t
    comparison, cpaths = compared.comparison, compared.paths
    timings["total"] = time.perf_counter() - t0
    result = DemoResult(
        mask_path=mask_path, report=report, comparison=comparison, comparison_paths=cpaths, timings=timings
    )
    result.demo_md = write_demo_md(result, cfg, out, title)
    return result


def write_demo_md(result: DemoResult, cfg: DemoConfig, out: Path, title: str) -> Path:
    """``demo.md``: what ran, how long it took, the table and the plots (links relative to ``out``)."""
    from lm_eval_achilles.comparison.tables import comparison_table

    def rel(p: Path) -> str:
        return str(Path(p).resolve().relative_to(out.resolve()))

    rep = json.loads(Path(result.report["json"]).read_text())
    crit = rep["critical"]
    t = result.timings
    lines = [
        f"# `achilles demo` — {title}, CPU",
        "",
        f"Command: `{cfg.command}`",
        "",
        f"Critical set: {len(crit['neurons'])} neuron(s): "
        + ", ".join(f"`{m}` ch {c}" for m, c in crit["neurons"])
        # report.json keeps an infinite perplexity as the string "inf" (standard JSON): float() reads it back
        + f"; probe perplexity {float(crit['baseline_ppl']):.4g} → {float(crit['masked_ppl']):.4g} "
        f"(Δ = {float(crit['delta']):.2f}).",
        "",
        f"Settings: tasks {', '.join(cfg.tasks)}; {cfg.limit or 'all'} document(s) per task (fixture data); generation "
        f"capped at {cfg.max_gen_toks} new tokens; batch size {cfg.batch_size}; seed {cfg.seed}.",
        "",
        "Time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()),
        "",
        "## Original vs masked",
        "",
        comparison_table(result.comparison),
        "",
        f"Full page: [{rel(result.comparison_paths['md'])}]({rel(result.comparison_paths['md'])})",
        "",
    ]
    if "plot" in result.comparison_paths:
        lines += [f"![original vs masked]({rel(result.comparison_paths['plot'])})", ""]
    lines += ["## Report", "", f"Full page: [{rel(result.report['md'])}]({rel(result.report['md'])})", ""]
    for key in ("phase_transition", "layers", "answer_token"):
        if key in result.report:
            lines += [f"![{key}]({rel(result.report[key])})", ""]
    resp = rep.get("responses", {}).get("rows", [])
    if resp:
        rows = [(r["question"], code_cell(r["original"], 80), code_cell(r["masked"], 80)) for r in resp]
        lines += [markdown_table(("question", "original", "masked"), rows)]
        lines.append("")
    return write_text_atomic(out / "demo.md", "\n".join(lines))
