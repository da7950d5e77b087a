"""MGSM (English) protocol (paper appendix A.3; docs/protocols.md, "achilles_mgsm_en"): raw question, reasoning score.

Differences from the reference code, deliberate (docs/protocols.md):

- the reasoning score uses the paper's **six** categories (the code had four), so the paper's
  threshold ``score > 0.2`` means "at least two categories" (the code's 1/4 made any single "-" count);
- word categories use word boundaries ("also" no longer counts as "so");
- the gold answer comes from ``answer_number`` (the code read ``answer``, which is "NULL" in the
  dataset, so its accuracy was always 0);
- thousands separators ("1,250") are removed before number extraction;
- rates are over all responses: a meaningless response has no reasoning and no answer;
  ``reasoning_rate_meaningful`` gives the authors' meaningful-only figure for comparison.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lm_eval_achilles.harness.scoring.quality import is_meaningful

#: the six categories of the paper, each a regex searched in the lower-cased response
REASONING_CATEGORIES: dict[str, re.Pattern] = {
    "operations": re.compile(r"[+\-−*/×÷]"),
    "step_indicators": re.compile(r"\bstep\s*\d+|\b(?:first|second|third|then|next|finally)\b"),
    "math_language": re.compile(r"\b(?:calculat\w*|comput\w*|solv\w*|total\w*|sum|sums|difference|product|quotient)\b"),
    "logical_connectors": re.compile(r"\b(?:because|since|therefore|so|thus|hence)\b"),
    "calculations": re.compile(r"\d+\s*[+\-−*/×÷]\s*\d+"),
    # step-by-step formatting: at least two lines that start like a list item or a step
    "structure": re.compile(r"(?m)^\s*(?:step\s*\d+[:.)]?|\d+[.)]|[-*•])\s"),
}
REASONING_THRESHOLD = 0.2


def prompt(doc: Mapping[str, Any]) -> str:
    """The raw question (no instruction added)."""
    return doc["question"]


def reasoning_categories(response: str) -> list[str]:
    """Names of the categories present in the response."""
    lower = (response or "").lower()
    found = []
    for name, pattern in REASONING_CATEGORIES.items():
        hits = pattern.findall(lower)
        if len(hits) >= (2 if name == "structure" else 1):
            found.append(name)
    return found


def reasoning_score(response: str) -> float:
    """Share of the six categories detected (paper eq. 11)."""
    return len(reasoning_categories(response)) / len(REASONING_CATEGORIES)


def has_reasoning(response: str) -> bool:
    return reasoning_score(response) > REASONING_THRESHOLD


_NUM = r"([+-]?\d*\.?\d+)"
_ANSWER_PATTERNS = (
    re.compile(r"\b(?:the answer is|answer:|final answer:|therefore,?|so,?|thus,?)\s*" + _NUM, re.IGNORECASE),
    re.compile(r"(?:=|equals?)\s*" + _NUM + r"\s*(?:\.|$)", re.IGNORECASE),
    re.compile(_NUM + r"\s*(?:\.|$)", re.IGNORECASE),
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _numbers(text: str) -> list[str]:
    """Decimals, then fractions, then integers (the reference's fallback list order)."""
    return re.findall(r"-?\d+\.\d+", text) + re.findall(r"-?\d+/\d+", text) + re.findall(r"-?\d+", text)


def _to_float(token: str) -> float | None:
    try:
        if "/" in token:
            a, b = token.split("/")
            return float(a) / float(b)
        return float(token)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(response: str) -> float | None:
    """Final numeric answer: the last match of the first answer pattern that matches, else the
    last number of the fallback list, else None."""
    text = _THOUSANDS.sub("", response or "")
    lower = text.lower().strip()
    for pattern in _ANSWER_PATTERNS:
        found = pattern.findall(lower)
        if found:
            return _to_float(found[-1])
    nums = _numbers(text)
    return _to_float(nums[-1]) if nums else None


def gold_number(doc: Mapping[str, Any]) -> float | None:
    """Gold from ``answer_number`` (int or numeric string)."""
    value = doc.get("answer_number")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        nums = _numbers(_THOUSANDS.sub("", value))
        return _to_float(nums[0]) if nums else None
    return None


def score(doc: Mapping[str, Any], response: str) -> dict[str, float]:
    meaningful = is_meaningful(response)
    pred = extract_number(response) if meaningful else None
    gold = gold_number(doc)
    correct = pred is not None and gold is not None and abs(pred - gold) <= 1e-6
    reasoning = meaningful and has_reasoning(response)
    return {
        "reasoning_rate": float(reasoning),
        "exact_match": float(correct),
        # the authors' denominator (meaningful responses only), aggregated by ``mean_over_flagged``
        "reasoning_rate_meaningful": (float(reasoning), meaningful),
        "meaningless_rate": float(not meaningful),
    }
