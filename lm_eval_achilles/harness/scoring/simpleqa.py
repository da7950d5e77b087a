"""SimpleQA protocol (docs/protocols.md, "achilles_simpleqa"): direct-answer prompt, first line, word containment.

There is no LLM grader (the paper uses none): ``contains_answer`` means "shares at least one word
with the gold answer" (stop words included, as in the paper's code) and ``exact_match`` compares
normalised strings. Rates are over **all** responses (a deliberate difference from the authors' code, see docs/protocols.md): a meaningless first line
(SimpleQA's lenient filter) scores 0. The reference code divided by the number of meaningful
responses only; ``contains_answer_meaningful`` reproduces that number for comparison.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lm_eval_achilles.harness.scoring.quality import is_meaningful_simpleqa

PROMPT = (
    "Answer the following question with only the direct answer. Do not provide explanations, "
    "reasoning, or additional text.\n\nQuestion: {question}\nAnswer:"
)


def build_prompt(question: str) -> str:
    return PROMPT.format(question=question)


def prompt(doc: Mapping[str, Any]) -> str:
    return build_prompt(doc["problem"])


def first_line(response: str) -> str:
    """The stripped first line, or the whole stripped response when the first line is empty."""
    text = (response or "").strip()
    line = text.split("\n")[0].strip()
    return line if line else text


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, delete ``.!?;,"'``."""
    text = re.sub(r"\s+", " ", (text or "").lower().strip())
    return re.sub(r"[.!?;,\"']", "", text)


def words(text: str) -> set[str]:
    out = set()
    for w in normalize(text).split():
        w = re.sub(r"[^\w\s]", "", w)
        if w:
            out.add(w)
    return out


@dataclass(frozen=True)
class QAMatch:
    exact: bool
    contains: bool
    overlap: float


def match(pred: str, gold: str) -> QAMatch:
    gold_words = words(gold)
    if not gold_words:
        overlap = 1.0
    else:
        overlap = len(words(pred) & gold_words) / len(gold_words)
    return QAMatch(exact=normalize(pred) == normalize(gold), contains=overlap > 0, overlap=overlap)


def score(doc: Mapping[str, Any], response: str) -> dict[str, object]:
    """The metrics of one record against its gold ``answer``."""
    gold = doc["answer"]
    answer = first_line(response)
    meaningful = is_meaningful_simpleqa(answer)
    m = match(answer, gold) if meaningful else QAMatch(False, False, 0.0)
    return {
        "contains_answer": float(m.contains),
        "exact_match": float(m.exact),
        "contains_answer_meaningful": (float(m.contains), meaningful),
        "meaningless_rate": float(not meaningful),
    }
