"""``achilles track CKPT1 CKPT2 ...``: the critical set along a series of checkpoints.

Each checkpoint (a local folder, a named model, a hub id, ``ID@REVISION``) is located with one
:class:`~lm_eval_achilles.locator.config.LocatorConfig` (through the ``locate=true`` cache, keyed by the
model's name, architecture, weights, dtype and the settings, so a rerun only locates new checkpoints),
then one table and one plot show, per checkpoint: critical-set size, minimal size (with ``minimize``), Δ,
the unmasked probe perplexity, and the overlap of the critical set with the previous and with the first
checkpoint's (shared neurons, Jaccard over ``(module, channel)``) — as one reads training progress.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_achilles.comparison.baseline import overlap
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import fmt, markdown_table
from lm_eval_achilles.jsonio import write_json_atomic, write_text_atomic
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.mask.mask_file import MaskFile, save_mask


def read_checkpoint_list(path: str | Path) -> list[str]:
    """One checkpoint per line; blank lines and ``#`` comments are skipped."""
    p = Path(path)
    if not p.is_file():
        raise AchillesError(f"checkpoint list not found: {p}")
    entries = [line.split("#", 1)[0].strip() for line in p.read_text(encoding="utf-8").splitlines()]
    entries = [e for e in entries if e]
    if not entries:
        raise AchillesError(f"{p}: no checkpoint listed")
    return entries


def check_checkpoints(entries: Sequence[str]) -> None:
    """Every entry before any work: at least two, no duplicates, every local folder present."""
    from lm_eval_achilles.models.loading import looks_local, split_revision
    from lm_eval_achilles.models.named import lookup

    if len(entries) < 2:
        raise AchillesError(f"track needs at least two checkpoints, got {len(entries)}")
    dupes = sorted({e for e in entries if list(entries).count(e) > 1})
    if dupes:
        raise AchillesError(f"checkpoint listed twice: {dupes[0]}")
    for i, entry in enumerate(entries, 1):
        name, _ = split_revision(entry)
        if lookup(name) is not None:
            continue
        if looks_local(str(name)) and not Path(str(name)).expanduser().is_dir():
            raise AchillesError(f"checkpoint {i} ({entry}) is not a folder here; nothing was located")


@dataclass
class TrackPoint:
    checkpoint: str
    mask: MaskFile
    mask_path: Path

    def row(self) -> dict[str, Any]:
        c, m = self.mask.critical, self.mask.minimal
        return {
            "checkpoint": self.checkpoint,
            "critical_size": len(self.mask.neurons) if c.size > 0 else None,
            "stopping_reason": c.stopping_reason,
            "minimal_size": len(m.neurons) if m is not None else None,
            "delta": c.delta,
            "baseline_ppl": c.baseline_ppl,
            "neurons": [[n.module, n.channel] for n in self.mask.neurons],
            "mask": str(self.mask_path),
        }


@dataclass
class Track:
    points: list[TrackPoint]
    config: LocatorConfig
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        first = self.points[0].mask.neurons
        for i, p in enumerate(self.points):
            row = p.row()
            prev = self.points[i - 1].mask.neurons if i else first
            row["shared_prev"], row["jaccard_prev"] = overlap(p.mask.neurons, prev) if i else (None, None)
            row["shared_first"], row["jaccard_first"] = overlap(p.mask.neurons, first)
            self.rows.append(row)


def run_track(
    entries: Sequence[str], out: str | Path, config: LocatorConfig, load: Callable[[str], Any], log=print
) -> Track:
    """Locate every checkpoint (cached) and write ``out/masks/NN.json``; returns the track (not yet written)."""
    from lm_eval_achilles.harness.model_args import locate_cached
    from lm_eval_achilles.mask.mask_file import load_mask

    check_checkpoints(entries)
    out = Path(out)
    points = []
    for i, entry in enumerate(entries, 1):
        log(f"[{i}/{len(entries)}] {entry}")
        loaded = load(entry)
        mask, cached = locate_cached(loaded, config)
        del loaded
        path = save_mask(load_mask(cached), out / "masks" / f"{i:02d}.json")
        points.append(TrackPoint(entry, mask, path))
    return Track(points, config)


COLUMNS = ("#", "checkpoint", "critical size", "minimal size", "Δ", "baseline PPL", "Jaccard prev", "Jaccard first")


def track_table(track: Track) -> str:
    rows = []
    for i, r in enumerate(track.rows, 1):
        crit = r["critical_size"] if r["critical_size"] is not None else f"none ({r['stopping_reason']})"
        rows.append(
            [
                i,
                f"`{r['checkpoint']}`",
                crit,
                "–" if r["minimal_size"] is None else r["minimal_size"],
                f"{r['delta']:.3f}",
                fmt(r["baseline_ppl"]),
                "–" if r["jaccard_prev"] is None else f"{r['jaccard_prev']:.2f} ({r['shared_prev']} shared)",
                f"{r['jaccard_first']:.2f} ({r['shared_first']} shared)",
            ]
        )
    return markdown_table(COLUMNS, rows)


def track_plot(track: Track, out: str | Path) -> Path:
    """Four panels over the checkpoints: set sizes, Δ, baseline perplexity, overlap."""
    from lm_eval_achilles.plotting import pyplot, save_figure

    plt = pyplot()
    xs = list(range(1, len(track.rows) + 1))
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    (a, b), (c, d) = axes

    def sizes(key):
        return [r[key] if r[key] is not None else float("nan") for r in track.rows]

    a.plot(xs, sizes("critical_size"), "o-", label="critical set")
    if any(r["minimal_size"] is not None for r in track.rows):
        a.plot(xs, sizes("minimal_size"), "s--", label="minimal set")
    for x, r in zip(xs, track.rows):
        if r["critical_size"] is None:
            a.annotate("none found", (x, 0), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    a.set_ylabel("neurons")
    a.set_ylim(bottom=0)
    a.set_title("critical-set size", fontsize=10)
    a.legend(fontsize=8)
    b.plot(xs, [r["delta"] for r in track.rows], "o-", color="tab:red")
    b.axhline(track.config.epsilon, color="gray", linestyle=":", label=f"ε = {track.config.epsilon:g}")
    b.set_ylabel("Δ (orders of magnitude)")
    b.set_title("Δ of the critical set", fontsize=10)
    b.legend(fontsize=8)
    c.plot(xs, [r["baseline_ppl"] for r in track.rows], "o-", color="tab:green")
    c.set_yscale("log")
    c.set_ylabel("perplexity (log)")
    c.set_title("unmasked probe perplexity", fontsize=10)
    d.plot(xs[1:], [r["jaccard_prev"] for r in track.rows[1:]], "o-", label="with the previous")
    d.plot(xs, [r["jaccard_first"] for r in track.rows], "s--", label="with the first")
    d.set_ylim(-0.05, 1.05)
    d.set_ylabel("Jaccard index")
    d.set_title("overlap of the critical sets", fontsize=10)
    d.legend(fontsize=8)
    for ax in (c, d):
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{i}" for i in xs])
        ax.set_xlabel("checkpoint (# in the table)")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    fig.suptitle("Critical neurons across checkpoints", fontsize=11)
    return save_figure(fig, out)


def write_track(track: Track, out: str | Path, command: str = "") -> dict[str, Path]:
    out = Path(out)
    paths = {"json": out / "track.json", "md": out / "track.md", "plot": out / "track.png"}
    write_json_atomic(
        paths["json"],
        {"format": "achilles-track/1", "command": command, "locator": track.config.to_record(), "rows": track.rows},
    )
    track_plot(track, paths["plot"])
    lines = ["# Critical neurons across checkpoints", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    cfg = track.config
    lines += [
        f"Locator: {cfg.method}, α = {cfg.alpha:g}, K = {cfg.samples}, seed {cfg.seed}, ε = {cfg.epsilon:g}, "
        f"step cap {cfg.max_steps}; one mask per checkpoint in `masks/`.",
        "",
        track_table(track),
        "",
        "Jaccard = shared neurons / neurons in either critical set, over (module, channel).",
        "",
        f"![track]({paths['plot'].name})",
        "",
    ]
    write_text_atomic(paths["md"], "\n".join(lines))
    return paths
