"""WikiText / C4 perplexity protocol (docs/protocols.md, "achilles_wikitext and achilles_c4").

Per text: tokenise with special tokens as the tokenizer adds them (BOS for Llama-3, none for
SmolLM2/Qwen), keep the first 512 tokens (no sliding window: the rest is discarded), and take the
model's NLL of every token after the first. Across texts:
``ppl = exp( sum_i mean_nll_i * N_i / sum_i N_i )`` with ``N_i`` the kept tokens including BOS --
the reference's weighting (N, not N - 1).

lm-eval's loglikelihood requests are (context, continuation) strings, so the truncation is expressed
as a text prefix. :func:`scoring_span` chooses the strings such that lm-eval's HFLM scores exactly the
reference's tokens:

- tokenizer adds BOS: context ``""`` -> HFLM uses BOS as context and scores every text token;
- tokenizer adds nothing (SmolLM2): context = the text of the first token, continuation = the rest,
  so the first token is conditioning only -- as in ``model(ids, labels=ids)``. (Sending ``""`` here
  would make HFLM prepend a BOS/EOS token the reference never saw.)

The cut is made at a token boundary and verified by re-tokenising; if a boundary does not survive
re-tokenisation the span is shortened by one token until it does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_TOKENS = 512
MAX_DOCS = 1000
MIN_CHARS = 50


def select_texts(texts: Iterable[str | None], corpus: str, max_docs: int | None = MAX_DOCS) -> list[str]:
    """Stripped texts in file order: WikiText keeps ``len > 50``, C4 keeps ``len >= 50``; first ``max_docs``."""
    if corpus not in ("wikitext", "c4"):
        raise ValueError(f"unknown corpus {corpus!r} (wikitext or c4)")
    out: list[str] = []
    for text in texts:
        t = (text or "").strip()
        keep = len(t) > MIN_CHARS if corpus == "wikitext" else len(t) >= MIN_CHARS
        if keep:
            out.append(t)
            if max_docs and len(out) >= max_docs:
                break
    return out


@dataclass(frozen=True)
class ScoringSpan:
    """What to send to lm-eval for one text, and how many tokens it scores."""

    context: str
    continuation: str
    #: predicted tokens (the reference's N - 1)
    n_scored: int
    #: "bos" (context is BOS) or "first_token" (context is the first text token)
    mode: str

    @property
    def n_tokens(self) -> int:
        """N: kept tokens including BOS / the first token -- the reference's weight."""
        return self.n_scored + 1


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def scoring_span(tokenizer, text: str, max_tokens: int = MAX_TOKENS) -> ScoringSpan:
    """The (context, continuation) pair that makes lm-eval's HFLM score the reference's tokens."""
    full = _ids(tokenizer, text, True)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    plain, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    if full == plain:
        mode, budget = "first_token", max_tokens
    elif len(full) == len(plain) + 1 and full[1:] == plain and full[0] == tokenizer.bos_token_id:
        mode, budget = "bos", max_tokens - 1
    else:
        raise ValueError(
            "unsupported tokenizer: it adds special tokens other than one leading BOS "
            "(perplexity tasks need BOS-or-nothing to reproduce the reference truncation)"
        )
    keep = min(len(plain), budget)
    for _ in range(16):
        if keep < (1 if mode == "bos" else 2):
            break
        cut = text if keep == len(plain) else text[: offsets[keep - 1][1]]
        if _ids(tokenizer, cut, False) == plain[:keep]:
            if mode == "bos":
                return ScoringSpan("", cut, keep, mode)
            for k in range(1, keep):
                head = cut[: offsets[k - 1][1]]
                if head and head == head.rstrip() and _ids(tokenizer, head, True) == plain[:k]:
                    return ScoringSpan(head, cut[len(head) :], keep - k, mode)
            break
        keep -= 1
    raise ValueError(f"cannot cut this text at a token boundary that survives re-tokenisation: {text[:60]!r}...")


def prompt(doc: Mapping[str, Any]) -> str:
    """The request's context string (``task_data.load_ppl_dataset`` stores it in the document)."""
    return doc["ppl_context"]


def continuation(doc: Mapping[str, Any]) -> str:
    """The request's continuation: the tokens that are scored."""
    return doc["ppl_continuation"]


def score(doc: Mapping[str, Any], response: Any) -> dict[str, tuple[float, int]]:
    """``token_perplexity``'s per-document value ``(loglikelihood_sum, n_scored)``; ``response`` is the
    loglikelihood request's result (lm-eval's ``(loglikelihood, is_greedy)``, or the bare number)."""
    loglikelihood = response[0] if isinstance(response, (tuple, list)) else response
    return {"token_perplexity": (float(loglikelihood), int(doc["ppl_scored"]))}


def token_weighted_perplexity(items: Iterable[Sequence[float]]) -> float:
    """``exp(sum mean_nll_i * N_i / sum N_i)`` from per-text ``(loglikelihood_sum, n_scored)``.

    ``N_i = n_scored_i + 1`` (tokens incl. BOS / first token). Computed in float64 log space;
    returns ``inf`` rather than raising when the masked perplexity overflows a double.
    """
    num, den = [], 0
    for ll, n_scored in items:
        n_scored = int(n_scored)
        if n_scored < 1:
            continue
        n = n_scored + 1
        num.append(-float(ll) / n_scored * n)
        den += n
    if not den:
        return float("nan")
    try:
        return math.exp(math.fsum(num) / den)
    except OverflowError:
        return float("inf")
