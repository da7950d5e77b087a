"""Perplexity on one text, per batch row, in float64 log space (docs/method.md, "Vocabulary": Delta)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from lm_eval_achilles.defaults import MAX_PPL_TOKENS, MIN_PROBE_TOKENS, SEARCH_BATCH_SIZE
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import Neuron, distinct
from lm_eval_achilles.mask.masking import row_masked, validate_neurons
from lm_eval_achilles.models.forward import forward, input_device

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


#: The next-token NLL is computed over this many float32 logits at a time (64 MiB; docs/method.md,
#: "Stage 2 memory"): log-softmax copies never span a whole [rows, positions, vocabulary] batch.
NLL_CHUNK_ELEMENTS = 2**24


def token_nlls(logits: torch.Tensor, targets: torch.Tensor, positions: int | None = None) -> torch.Tensor:
    """Next-token NLL per row and position, float32 [B, T], from ``logits`` [B, T, V] and ``targets``
    [B, T]. Log-softmax runs in float32 (at least) over ``positions`` positions of every row at a time
    (default: as many as fit :data:`NLL_CHUNK_ELEMENTS`); each position's value does not depend on the
    chunk, so any chunking gives the same numbers, bit for bit."""
    b, t, v = logits.shape
    step = positions or max(1, NLL_CHUNK_ELEMENTS // max(1, b * v))
    out = torch.empty(b, t, dtype=torch.float32, device=logits.device)
    for i in range(0, t, step):
        logp = torch.log_softmax(logits[:, i : i + step].float(), dim=-1)
        out[:, i : i + step] = -logp.gather(-1, targets[:, i : i + step, None]).squeeze(-1)
        del logp
    return out


@torch.no_grad()
def mean_nll(model, input_ids: torch.Tensor, positions: int | None = None) -> torch.Tensor:
    """Mean next-token NLL of every row of ``input_ids`` [B, T] (float64, shape [B]).

    Log-softmax runs in float32 at least, so half-precision models do not overflow, a chunk of
    positions at a time (:func:`token_nlls`); the mean is taken in float64 so that masked perplexities
    of 1e20 and beyond stay exact in log space.
    """
    ids = input_ids.to(input_device(model))
    logits = forward(model, input_ids=ids).logits[:, :-1]
    nll = token_nlls(logits, ids[:, 1:].to(logits.device), positions)
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
    batch_size: int = SEARCH_BATCH_SIZE,
    progress=None,
    sizes: dict[str, int] | None = None,
    memo: dict[frozenset, float] | None = None,
) -> list[float]:
    """Mean NLL of one text under each neuron set, ``batch_size`` sets per batched forward (a different
    mask per row). A set given twice is evaluated once; with ``memo`` (a dict kept by the caller for
    one model, text and scale: frozenset of neurons -> mean NLL) sets already in it are not evaluated
    again, and the new ones are added. ``progress`` is an optional tqdm bar advanced per set evaluated;
    ``sizes`` are module output sizes already validated (see
    :func:`~lm_eval_achilles.mask.masking.validate_neurons`)."""
    memo = {} if memo is None else memo
    keys = [frozenset(Neuron(n.module, n.channel) for n in s) for s in sets]
    new = list(dict.fromkeys(k for k in keys if k not in memo))
    union = distinct(n for k in new for n in sorted(k))
    if union and (sizes is None or any(n.module not in sizes for n in union)):
        sizes = validate_neurons(model, union)
    for start in range(0, len(new), batch_size):
        chunk = new[start : start + batch_size]
        with row_masked(model, [sorted(k) for k in chunk], scale=scale, sizes=sizes):
            memo.update(zip(chunk, mean_nll(model, input_ids.expand(len(chunk), -1)).tolist()))
        if progress is not None:
            progress.update(len(chunk))
    if progress is not None and len(keys) > len(new):
        progress.update(len(keys) - len(new))  # the sets known already count as done
    return [memo[k] for k in keys]
