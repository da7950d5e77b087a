"""What every study shares: the context (model, texts, parameters, cached rankings and critical set),
batched perplexity over several texts, and the result writer (markdown table + JSON + plot)."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.defaults import MAX_PPL_TOKENS, SAMPLES
from lm_eval_achilles.formatting import dtype_name, markdown_table
from lm_eval_achilles.jsonio import write_json_atomic, write_text_atomic
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.locate import Located, rank_and_search
from lm_eval_achilles.locator.perplexity import encode, evaluate_sets, ppl
from lm_eval_achilles.locator.perturbation import AUTO_CAP, perturbation_scores
from lm_eval_achilles.locator.rankers import get_ranker
from lm_eval_achilles.locator.ranking import rank_scores
from lm_eval_achilles.locator.search import SearchResult, search_ranking
from lm_eval_achilles.mask.mask_file import Neuron, RankedNeuron, distinct
from lm_eval_achilles.models.loading import LoadedModel
from lm_eval_achilles.paper.studies.texts import WIKITEXT


def encode_quiet(tokenizer, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """``encode`` without the short-text warning (the length study uses short texts on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encode(tokenizer, text, max_tokens=max_tokens)


def texts_nll(
    model,
    texts_ids: Sequence[torch.Tensor],
    sets: Sequence[Sequence[Neuron]],
    scale: float = 0.0,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "evaluating",
) -> list[float]:
    """Token-weighted mean NLL over several texts (each [1, T]) for every neuron set, ``batch_size`` sets
    per batched forward (a different mask per batch row; an empty set is the unmasked model)."""
    if not sets:
        return []
    total = torch.zeros(len(sets), dtype=torch.float64)
    tokens = 0
    with tqdm(total=len(sets) * len(texts_ids), desc=desc, disable=not progress, unit="set") as bar:
        for ids in texts_ids:
            n = ids.shape[1] - 1
            total += (
                torch.tensor(
                    evaluate_sets(model, ids, list(sets), scale=scale, batch_size=batch_size, progress=bar),
                    dtype=torch.float64,
                )
                * n
            )
            tokens += n
    return (total / tokens).tolist()


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.inf, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def short(n: Neuron | RankedNeuron) -> str:
    """``L11.down_proj:507`` for ``model.layers.11.mlp.down_proj`` channel 507 (compact table cells)."""
    parts = n.module.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        name = f"L{parts[i + 1]}." + parts[-1]
    else:
        name = n.module
    return f"{name}:{n.channel}"


@dataclass
class StudyContext:
    """Everything a study needs; rankings, the stage-1 scores and the critical set are computed once and
    shared by all studies of one ``achilles study all`` run. The locator's settings are one
    :class:`~lm_eval_achilles.locator.config.LocatorConfig` (``config``); a study that varies one of them
    passes it as an override (``ctx.ranking("perturbation", alpha=3)``)."""

    loaded: LoadedModel
    out: Path
    command: str = ""
    config: LocatorConfig = field(default_factory=lambda: LocatorConfig(ranking_size=1000))
    eval_texts: list[str] = field(default_factory=lambda: list(WIKITEXT))
    trials: int = 10
    quick: bool = False
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def probe_text(self) -> str:
        return self.config.text

    @property
    def progress(self) -> bool:
        return self.config.progress

    @property
    def batch_size(self) -> int:
        """Masked sets per batched forward (the locator's ``search_batch_size``)."""
        return self.config.search_batch_size

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def module_names(self) -> list[str]:
        return self._cached("modules", lambda: candidate_modules(self.model, self.config.modules))

    def ids(self, text: str, max_tokens: int | None = None) -> torch.Tensor:
        return self._cached(("ids", text, max_tokens), lambda: encode_quiet(self.tokenizer, text, max_tokens))

    @property
    def probe_ids(self) -> torch.Tensor:
        return self.ids(self.probe_text)

    @property
    def eval_ids(self) -> list[torch.Tensor]:
        return [self.ids(t, MAX_PPL_TOKENS) for t in self.eval_texts]

    def with_settings(self, **overrides) -> LocatorConfig:
        """The context's config with ``overrides``; the ranking always covers the stage-2 cap."""
        cfg = LocatorConfig.build(self.config, **overrides)
        if "ranking_size" not in overrides and cfg.ranking_size < cfg.max_steps:
            cfg = replace(cfg, ranking_size=cfg.max_steps)
        return cfg

    def ranking(
        self, method: str = "perturbation", text: str | None = None, modules: Sequence[str] | None = None, **overrides
    ) -> list[RankedNeuron]:
        """Ranking by ``method`` on ``text`` (default the probe), cached by all its parameters. With
        ``samples="auto"`` a perturbation ranking is the one the adaptive locator settles on for that text."""
        text = self.probe_text if text is None else text
        names = list(modules) if modules is not None else self.module_names()
        if method != "perturbation" and self.config.samples == "auto":
            overrides.setdefault("samples", SAMPLES)  # only the perturbation ranker draws samples
        cfg = self.with_settings(method=method, **overrides)
        if method == "perturbation" and cfg.samples == "auto":
            size = {k: v for k, v in overrides.items() if k != "ranking_size"}
            return self.located(text, names, self.with_settings(**size)).ranking[: cfg.ranking_size]
        if (
            method == "perturbation"
            and text == self.probe_text
            and modules is None
            and not set(overrides) & {"alpha", "samples", "seed", "batch_size"}
        ):
            key = ("ranking-stage1", cfg.ranking_size, cfg.granularity)  # same stage-1 run as stage1_scores()
            return self._cached(key, lambda: rank_scores(self.stage1_scores(), cfg.ranking_size, cfg.granularity))
        key = ("ranking", text, tuple(names), cfg)
        return self._cached(key, lambda: get_ranker(method)(self.model, self.tokenizer, self.ids(text), names, cfg))

    def located(self, text: str, names: Sequence[str], cfg: LocatorConfig) -> Located:
        """Both stages of the locator on ``text`` (its own test text), as ``locate()`` runs them."""
        key = ("located", text, tuple(names), cfg)
        ids = self.ids(text)
        return self._cached(
            key, lambda: rank_and_search(self.model, self.tokenizer, ids, ids[:, :MAX_PPL_TOKENS], list(names), cfg)
        )

    def stage1_scores(self) -> dict[str, torch.Tensor]:
        """Stage-1 importance of every candidate module on the probe (the context's settings; with
        ``samples="auto"`` at the K the adaptive run settled on, from the same noise draws)."""
        cfg = self.config
        samples, cap = cfg.samples, cfg.samples
        if samples == "auto":
            samples = self.located(self.probe_text, self.module_names(), self.with_settings()).info["samples_used"]
            cap = AUTO_CAP
        return self._cached(
            "stage1",
            lambda: perturbation_scores(
                self.model,
                self.probe_ids,
                self.module_names(),
                alpha=cfg.alpha,
                samples=samples,
                seed=cfg.seed,
                batch_size=cfg.batch_size,
                progress=cfg.progress,
                cap=cap,
            ),
        )

    def search(
        self,
        ranking: Sequence[RankedNeuron | Neuron],
        text: str | None = None,
        epsilon: float | None = None,
        max_steps: int | None = None,
    ) -> SearchResult:
        """Stage 2 of ``ranking`` on ``text`` with the context's settings (``epsilon``/``max_steps`` varied)."""
        text = self.probe_text if text is None else text
        given = {k: v for k, v in {"epsilon": epsilon, "max_steps": max_steps}.items() if v is not None}
        return search_ranking(self.model, self.ids(text)[:, :MAX_PPL_TOKENS], ranking, self.with_settings(**given))

    def critical(self) -> SearchResult:
        """The paper's critical set on the probe (perturbation ranking, the context's settings)."""
        if self.config.samples == "auto":
            return self.located(self.probe_text, self.module_names(), self.with_settings()).result
        return self._cached("critical", lambda: self.search(self.ranking("perturbation")))

    def critical_neurons(self, fallback: int = 10) -> tuple[list[Neuron], str]:
        """The critical set, or (if none was found) the first ``fallback`` ranked neurons, with a note."""
        res = self.critical()
        if res.size > 0:
            return list(res.neurons), f"critical set ({len(res.neurons)} neurons, Delta = {res.delta:.2f} on the probe)"
        top = distinct(r.neuron for r in self.ranking("perturbation"))[:fallback]
        return top, f"no critical set found ({res.stopping_reason}); using the top {len(top)} ranked neurons instead"

    def eval_nll(self, sets: Sequence[Sequence[Neuron]], scale: float = 0.0, desc: str = "evaluating") -> list[float]:
        return texts_nll(
            self.model, self.eval_ids, sets, scale=scale, batch_size=self.batch_size, progress=self.progress, desc=desc
        )

    def baseline_eval_nll(self) -> float:
        return self._cached("baseline_eval", lambda: self.eval_nll([[]], desc="baseline")[0])


@dataclass
class StudyResult:
    name: str
    title: str
    claim: str  # what the paper claims (with its table/figure)
    columns: list[str]
    rows: list[list[Any]]
    data: dict[str, Any]  # raw numbers (JSON)
    findings: list[str] = field(default_factory=list)  # what this model shows, computed from the numbers
    notes: list[str] = field(default_factory=list)  # protocol choices and deviations
    plot: str | None = None  # file name of the plot inside the study folder
    extra_tables: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)


def context_meta(ctx: StudyContext) -> dict[str, Any]:
    return {
        "model": ctx.loaded.name_or_path,
        "display_name": ctx.loaded.display_name,
        "dtype": dtype_name(next(ctx.model.parameters()).dtype),
        "alpha": ctx.config.alpha,
        "samples": ctx.config.samples,
        "seed": ctx.config.seed,
        "epsilon": ctx.config.epsilon,
        "trials": ctx.trials,
        "max_steps": ctx.config.max_steps,
        "modules": ctx.config.modules,
        "quick": ctx.quick,
        "probe_tokens": int(ctx.probe_ids.shape[1]),
        "eval_texts": len(ctx.eval_texts),
        "eval_tokens": int(sum(i.shape[1] for i in ctx.eval_ids)),
    }


def write_result(result: StudyResult, ctx: StudyContext, seconds: float | None = None) -> Path:
    """``<out>/<name>/README.md`` (command, parameters, claim, table, findings) and ``<name>.json``."""
    folder = Path(ctx.out) / result.name
    folder.mkdir(parents=True, exist_ok=True)
    meta = context_meta(ctx)
    lines = [f"# Study `{result.name}`: {result.title}", ""]
    if ctx.command:
        lines += ["Command:", "", "```", ctx.command, "```", ""]
    lines += [
        f"Model: {meta['display_name']} ({meta['dtype']}); probe {meta['probe_tokens']} tokens; "
        f"evaluation text: {meta['eval_texts']} WikiText-style paragraphs, {meta['eval_tokens']} tokens; "
        f"alpha={ctx.config.alpha}, K={ctx.config.samples}, seed={ctx.config.seed}, epsilon={ctx.config.epsilon}"
        + (f"; ran in {seconds:.0f} s" if seconds is not None else "")
        + ".",
        "",
    ]
    lines += [f"**Paper's claim.** {result.claim}", ""]
    lines += [markdown_table(result.columns, result.rows), ""]
    for title, cols, rows in result.extra_tables:
        lines += [f"**{title}**", "", markdown_table(cols, rows), ""]
    if result.findings:
        lines += ["**What this model shows.**", ""] + [f"- {f}" for f in result.findings] + [""]
    if result.notes:
        lines += ["**Notes.**", ""] + [f"- {n}" for n in result.notes] + [""]
    if result.plot:
        lines += [f"![{result.name}]({result.plot})", ""]
    write_text_atomic(folder / "README.md", "\n".join(lines))
    payload = {
        "study": result.name,
        "title": result.title,
        "command": ctx.command,
        "meta": meta,
        "seconds": seconds,
        "claim": result.claim,
        "columns": result.columns,
        "rows": result.rows,
        "findings": result.findings,
        "notes": result.notes,
        "plot": result.plot,
        "data": result.data,
    }
    write_json_atomic(folder / f"{result.name}.json", payload)
    return folder


__all__ = ["StudyContext", "StudyResult", "texts_nll", "write_result", "mean_sd", "short", "ppl", "encode_quiet"]
