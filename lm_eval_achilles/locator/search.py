"""Stage 2 of the paper (Algorithm 2): the shortest prefix of the ranking whose masking raises
perplexity on the test text by at least epsilon orders of magnitude.

Several candidate prefixes are evaluated in one batched forward (a different mask per batch row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.defaults import EPSILON, MAX_STEPS, STEP
from lm_eval_achilles.locator.perplexity import baseline_nll, delta, evaluate_sets, ppl
from lm_eval_achilles.mask.mask_file import Neuron, distinct


@dataclass
class SearchResult:
    size: int  # number of ranking entries in the critical prefix (0 if not found)
    neurons: list[Neuron]  # distinct channels of that prefix
    baseline_nll: float
    masked_nll: float
    stopping_reason: str  # "threshold", "max_steps_reached" or "ranking_exhausted"
    curve: list[tuple[int, float]] = field(default_factory=list)  # (n, mean NLL), n = 0 is the baseline

    @property
    def delta(self) -> float:
        return delta(self.masked_nll, self.baseline_nll)

    @property
    def collapsed_nonfinite(self) -> bool:
        """The masked perplexity was NaN/inf: counted as a collapse (Delta = inf)."""
        return not math.isfinite(self.masked_nll)

    @property
    def baseline_ppl(self) -> float:
        return ppl(self.baseline_nll)

    @property
    def masked_ppl(self) -> float:
        return ppl(self.masked_nll)

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
    batch_size: int = 8,
    progress: bool = True,
) -> SearchResult:
    """Mask ``ranking[:s*step]`` for s = 1, 2, ... until Delta >= epsilon.

    The batch that contains the crossing is evaluated whole, so the curve also shows a few points past
    the critical size (the phase transition). A NaN/inf masked perplexity is a collapse (Delta = inf,
    see :func:`~lm_eval_achilles.locator.perplexity.delta`); a non-finite baseline is an error."""
    if step < 1:
        raise ValueError("step must be >= 1")
    baseline = baseline_nll(model, input_ids)
    curve: list[tuple[int, float]] = [(0, baseline)]
    prefixes: list[int] = []
    for s in range(1, max_steps + 1):
        n = min(s * step, len(ranking))
        if prefixes and n == prefixes[-1]:
            break
        prefixes.append(n)
    from lm_eval_achilles.mask.masking import validate_neurons

    sizes = validate_neurons(model, distinct(ranking[: prefixes[-1]])) if prefixes else {}
    found = None
    with tqdm(total=len(prefixes), desc="stage 2: greedy search", disable=not progress, unit="step") as bar:
        for start in range(0, len(prefixes), batch_size):
            chunk = prefixes[start : start + batch_size]
            nlls = evaluate_sets(
                model, input_ids, [ranking[:n] for n in chunk], scale=scale, batch_size=batch_size, sizes=sizes
            )
            bar.update(len(chunk))
            curve.extend(zip(chunk, nlls))
            hits = [(n, v) for n, v in zip(chunk, nlls) if delta(v, baseline) >= epsilon]
            if hits:
                found = hits[0]
                break
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
