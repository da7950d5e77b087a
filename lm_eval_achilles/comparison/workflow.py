"""One way through a comparison: (locate) -> both conditions in lm-eval -> paired metrics -> tables.

``achilles compare`` and ``achilles demo`` both run through :func:`compare_model` (evaluate, then
:func:`compare_and_write`, which adds the answers' fluency under the original model); ``achilles compare --original A --masked B`` runs :func:`compare_and_write`
alone on two existing lm-eval output folders. :func:`locate_to_file` is the locate step both use when no
mask is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.comparison.conditions import RunSettings, run_conditions
from lm_eval_achilles.comparison.fluency import add_fluency
from lm_eval_achilles.comparison.metrics import compare_folders
from lm_eval_achilles.comparison.runs import load_run
from lm_eval_achilles.comparison.tables import write_comparison
from lm_eval_achilles.locator.locate import locate
from lm_eval_achilles.mask.mask_file import save_mask


@dataclass
class Comparison:
    """What a comparison wrote: the comparison document (rows, warnings, runs) and its files."""

    comparison: dict[str, Any]
    paths: dict[str, Path]
    original: Path
    masked: Path


def locate_to_file(loaded, config, path: str | Path, summary: Callable | None = None):
    """Locate with ``config`` (a :class:`~lm_eval_achilles.locator.config.LocatorConfig`) and save the
    mask to ``path``; ``summary(mask, model_name, path)`` prints it (the CLI's summary). Returns the mask."""
    mask = locate(loaded, config)
    saved = save_mask(mask, path)
    if summary is not None:
        summary(mask, loaded.display_name, saved)
    return mask


def compare_and_write(
    original: str | Path,
    masked: str | Path,
    out: str | Path,
    tasks: Sequence[str] | None = None,
    iters: int = 10_000,
    seed: int = 1234,
    title: str = "Original vs masked",
    notes: Sequence[str] = (),
    judge: Callable | None = None,
) -> Comparison:
    """Pair two lm-eval output folders per document, test every metric (with ``judge``, the original
    model as :func:`fluency_judge` loads it, also the fluency of the answers: :mod:`.fluency`), write
    comparison.json/.md/.png."""
    comparison = compare_folders(original, masked, tasks=tasks, iters=iters, seed=seed)
    if judge is not None:
        loaded = judge()
        add_fluency(comparison, load_run(original), load_run(masked), loaded, iters=iters, seed=seed)
        del loaded
    paths = write_comparison(comparison, out, title=title, notes=notes)
    return Comparison(comparison, paths, Path(original), Path(masked))


def compare_model(
    base_model_args: dict[str, Any],
    mask_path: str | Path,
    settings: RunSettings,
    out: str | Path,
    top_n: int | None = None,
    overwrite: bool = False,
    iters: int = 10_000,
    title: str = "Original vs masked",
    notes: Sequence[str] = (),
    fluency: bool = True,
) -> Comparison:
    """Evaluate the original and the masked model with identical ``settings`` into ``out/original`` and
    ``out/masked``, then :func:`compare_and_write` them (bootstrap seeded with the run's seed)."""
    original, masked = run_conditions(base_model_args, mask_path, settings, out, top_n=top_n, overwrite=overwrite)
    judge = (lambda: fluency_judge(base_model_args, settings.device)) if fluency else None
    return compare_and_write(
        original, masked, out, iters=iters, seed=settings.seed, title=title, notes=notes, judge=judge
    )


def fluency_judge(model_args: dict[str, Any], device: str | None = None):
    """The original (unmasked) model of a run, loaded from its model arguments, to judge fluency."""
    from lm_eval_achilles.models.loading import load_model

    return load_model(
        model_args.get("pretrained") or "embedded",
        gguf_file=model_args.get("gguf_file"),
        dtype=model_args.get("dtype") or "auto",
        device=device,
        trust_remote_code=bool(model_args.get("trust_remote_code", False)),
        revision=model_args.get("revision"),
    )
