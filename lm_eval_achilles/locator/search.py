"""Stage 2 of the paper (Algorithm 2): the shortest prefix of the ranking whose masking raises
perplexity on the test text by at least epsilon orders of magnitude.

Several candidate prefixes are evaluated in one batched forward (a different mask per batch row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.defaults import EPSILON, MAX_STEPS, SEARCH_BATCH_SIZE, STEP
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.perplexity import PerplexityChange, baseline_nll, delta, evaluate_sets, ppl
from lm_eval_achilles.mask.mask_file import Neuron, distinct
from lm_eval_achilles.mask.masking import validate_neurons

if TYPE_CHECKING:  # the config imports the rankers, which need nothing from here: typing only
    from lm_eval_achilles.locator.config import LocatorConfig


@dataclass
class SearchResult(PerplexityChange):
    size: int  # number of ranking entries in the critical prefix (0 if not found)
    neurons: list[Neuron]  # distinct channels of that prefix
    baseline_nll: float
    masked_nll: float
    stopping_reason: str  # "threshold", "max_steps_reached" or "ranking_exhausted"
    curve: list[tuple[int, float]] = field(default_factory=list)  # (n, mean NLL), n = 0 is the baseline

    def curve_ppl(self) -> list[list[float]]:
        return [[n, ppl(nll)] for n, nll in self.curve]


def greedy_search(
    model,
    input_ids: torch.Tensor,
    ranking: Sequence[Neuron],
    epsilon: float = EPSILON,
    step: int = STEP,
    max_steps: int = MAX_STEPS,
    scale: float = 0.0,
    batch_size: int = SEARCH_BATCH_SIZE,
    progress: bool = True,
    memo: dict[frozenset, float] | None = None,
) -> SearchResult:
    """Mask ``ranking[:s*step]`` for s = 1, 2, ... until Delta >= epsilon.

    ``batch_size`` distinct sets go into one batched forward. Prefixes that mask the same channels
    (``granularity=position`` repeats a channel at several positions) are evaluated once, and so is
    any set already in ``memo`` (kept by the caller for this model, text and scale; the sets evaluated
    here are added to it). The batch that contains the crossing is evaluated whole, so the curve also
    shows a few points past the critical size (the phase transition). A NaN/inf masked perplexity is a
    collapse (Delta = inf, see :func:`~lm_eval_achilles.locator.perplexity.delta`); a non-finite
    baseline is an error."""
    if step < 1:
        raise AchillesError(f"step must be >= 1, got {step}")
    memo = {} if memo is None else memo
    baseline = baseline_nll(model, input_ids)
    curve: list[tuple[int, float]] = [(0, baseline)]
    prefixes: list[int] = []
    for s in range(1, max_steps + 1):
        n = min(s * step, len(ranking))
        if prefixes and n == prefixes[-1]:
            break
        prefixes.append(n)
    sizes = validate_neurons(model, distinct(ranking[: prefixes[-1]])) if prefixes else {}
    keys, seen, done = [], set(), 0  # the set of channels each prefix masks
    for n in prefixes:
        seen.update(Neuron(r.module, r.channel) for r in ranking[done:n])
        keys.append(frozenset(seen))
        done = n
    found = None
    i = 0
    if progress and len(prefixes) > 8 * batch_size:
        tqdm.write(
            f"stage 2: up to {len(prefixes)} prefixes (--max-steps); it stops at the first with Delta >= {epsilon:g}, "
            "so a model with no critical set walks all of them (lower --max-steps for a cheaper bound)"
        )
    # no ETA: the walk usually stops long before the cap, and an ETA for all of it would mislead
    fmt = "{desc}: {n_fmt} prefixes (at most {total_fmt}) [{elapsed}, {rate_fmt}]"
    with tqdm(
        total=len(prefixes), desc="stage 2: greedy search", disable=not progress, bar_format=fmt, unit=" prefix"
    ) as bar:
        while i < len(prefixes) and found is None:
            start, new = i, set()
            while i < len(prefixes) and (keys[i] in memo or keys[i] in new or len(new) < batch_size):
                if keys[i] not in memo:
                    new.add(keys[i])
                i += 1
            chunk = prefixes[start:i]
            nlls = evaluate_sets(
                model,
                input_ids,
                [sorted(k) for k in keys[start:i]],
                scale=scale,
                batch_size=batch_size,
                sizes=sizes,
                memo=memo,
            )
            bar.update(len(chunk))
            curve.extend(zip(chunk, nlls))
            hits = [(n, v) for n, v in zip(chunk, nlls) if delta(v, baseline) >= epsilon]
            if hits:
                found = hits[0]
    if found is not None:
        n, nll = found
        reason = "threshold"
    else:
        n, nll = curve[-1]
        reason = "ranking_exhausted" if prefixes and prefixes[-1] == len(ranking) else "max_steps_reached"
    return SearchResult(
        size=n if found is not None else 0,
        neurons=distinct(ranking[:n]) if found is not None else [],
        baseline_nll=baseline,
        masked_nll=nll,
        stopping_reason=reason,
        curve=curve,
    )


def search_ranking(
    model, test_ids: torch.Tensor, ranking: Sequence, cfg: LocatorConfig, memo: dict | None = None
) -> SearchResult:
    """Stage 2 with a :class:`~lm_eval_achilles.locator.config.LocatorConfig`'s settings (epsilon, step,
    max_steps, scale, search_batch_size): the one entry used by ``locate()`` and the studies. ``memo``
    (see :func:`greedy_search`) carries evaluated sets between searches on one text."""
    if not ranking:
        raise AchillesError("the ranking is empty: no neuron changed under the perturbation")
    return greedy_search(
        model,
        test_ids,
        [Neuron(r.module, r.channel) for r in ranking],
        epsilon=cfg.epsilon,
        step=cfg.step,
        max_steps=cfg.max_steps,
        scale=cfg.scale,
        batch_size=cfg.search_batch_size,
        progress=cfg.progress,
        memo=memo,
    )
