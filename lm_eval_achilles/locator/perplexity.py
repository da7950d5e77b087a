"""Perplexity on one text, per batch row, in float64 log space (docs/method.md, "Vocabulary": Delta)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from lm_eval_achilles.defaults import MAX_PPL_TOKENS, MIN_PROBE_TOKENS
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import distinct
from lm_eval_achilles.mask.masking import row_masked, validate_neurons

LN10 = math.log(10.0)


def encode(tokenizer, text: str, max_tokens: int | None = MAX_PPL_TOKENS, what: str = "text") -> torch.Tensor:
    """Token ids [1, T] with special tokens as the tokenizer adds them, truncated to ``max_tokens``."""
    if not isinstance(text, str) or not text.strip():
        raise AchillesError(f"the {what} is empty")
    ids = tokenizer(text, return_tensors="pt").input_ids
    if max_tokens and ids.shape[1] > max_tokens:
        warnings.warn(f"the {what} has {ids.shape[1]} tokens; only the first {max_tokens} are used", stacklevel=2)
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens).input_ids
    if ids.shape[1] < 2:
        raise AchillesError(f"the {what} has {ids.shape[1]} token(s); at least 2 are needed")
    if ids.shape[1] < MIN_PROBE_TOKENS:
        warnings.warn(
            f"the {what} has only {ids.shape[1]} tokens; the paper found critical sets unstable below "
            f"T_min = {MIN_PROBE_TOKENS} tokens",
            stacklevel=2,
        )
    return ids


@torch.no_grad()
def mean_nll(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of every row of ``input_ids`` [B, T] (float64, shape [B]).

    Log-softmax runs in float32 at least, so half-precision models do not overflow; the mean is
    taken in float64 so that masked perplexities of 1e20 and beyond stay exact in log space.
    """
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return nll.double().mean(dim=1).cpu()


def delta(nll_masked: float, nll_baseline: float) -> float:
    """Delta = log10(PPL_masked / PPL_original), from mean NLLs (never by exponentiating).

    A NaN or +inf masked NLL (the masked model produced non-finite logits, e.g. an fp16 overflow) is a
    collapse: Delta = +inf, so it counts as crossing any epsilon instead of never crossing (NaN >= eps is
    False). The masked perplexity itself stays NaN/inf where it is stored, so the report says what it saw.
    A non-finite *baseline* is not a collapse; :func:`baseline_nll` refuses it."""
    m, b = float(nll_masked), float(nll_baseline)
    if not math.isfinite(m) and m != -math.inf and math.isfinite(b):
        return math.inf
    return (m - b) / LN10


def baseline_nll(model, input_ids: torch.Tensor, what: str = "test text") -> float:
    """The unmasked model's mean NLL on one text [1, T]; an error if it is not finite (no Delta exists)."""
    nll = float(mean_nll(model, input_ids)[0])
    if not math.isfinite(nll):
        raise AchillesError(
            f"the unmasked model's perplexity on the {what} is {ppl(nll)} (mean NLL {nll}): no Delta can be "
            "measured against it; check the model's dtype (float16 overflows on some models) and weights"
        )
    return nll


def ppl(nll: float) -> float:
    """exp(NLL) in float64; inf (not an exception) past ~1e308."""
    try:
        return math.exp(float(nll))
    except OverflowError:
        return math.inf


class PerplexityChange:
    """What a masked evaluation measured, read from the two mean NLLs it stores (``baseline_nll``,
    ``masked_nll``): shared by the stage-2 result and the minimal-set result."""

    baseline_nll: float
    masked_nll: float

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


def evaluate_sets(
    model,
    input_ids: torch.Tensor,
    sets: Sequence[Sequence],
    scale: float = 0.0,
    batch_size: int = 8,
    progress=None,
    sizes: dict[str, int] | None = None,
) -> list[float]:
    """Mean NLL of one text under each neuron set, ``batch_size`` sets per batched forward (a different
    mask per row). ``progress`` is an optional tqdm bar advanced per set; ``sizes`` are module output
    sizes already validated (see :func:`~lm_eval_achilles.mask.masking.validate_neurons`)."""
    union = distinct(n for s in sets for n in s)
    if sizes is None or any(n.module not in sizes for n in union):
        sizes = validate_neurons(model, union)
    out: list[float] = []
    for start in range(0, len(sets), batch_size):
        chunk = sets[start : start + batch_size]
        with row_masked(model, chunk, scale=scale, sizes=sizes):
            out.extend(mean_nll(model, input_ids.expand(len(chunk), -1)).tolist())
        if progress is not None:
            progress.update(len(chunk))
    return out
