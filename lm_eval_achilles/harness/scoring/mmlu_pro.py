"""MMLU-Pro protocol (docs/protocols.md, "achilles_mmlu_pro"): system-style preamble, options (A)..(J), strict extraction.

The paper accepts only "The answer is (X)" so that a collapsed model cannot score by accident; there
is no fallback and no quality filter (``meaningless_rate`` is reported for information only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lm_eval_achilles.harness.scoring.quality import is_meaningful

LETTERS = "ABCDEFGHIJ"
PREAMBLE = (
    "You are a knowledge expert. You are supposed to answer the multi-choice question to derive "
    'your final answer as "The answer is (X)" where X is the correct option letter.\n\n'
)
INSTRUCTION = '\n\nPlease provide your answer as "The answer is (X)" where X is the correct option letter.'
ANSWER_RE = re.compile(r"THE\s+ANSWER\s+IS\s+\(?([ABCDEFGHIJ])\)?")


def format_options(options: Sequence[str]) -> str:
    """``Options are:\\n(A): ...\\n(B): ...`` (trailing newline stripped, texts used as-is)."""
    return ("Options are:\n" + "".join(f"({L}): {opt}\n" for L, opt in zip(LETTERS, options))).strip()


def build_prompt(question: str, options: Sequence[str]) -> str:
    return PREAMBLE + f"Q: {question}\n" + format_options(options) + INSTRUCTION


def prompt(doc: Mapping[str, Any]) -> str:
    return build_prompt(doc["question"], doc["options"])


def extract_choice(response: str, n_options: int) -> int:
    """Index of the first "The answer is (X)" letter, or -1.

    The response is upper-cased first (so "the answer is a" counts as A). Only the *first* match is
    considered: if its letter is beyond the number of options the result is -1 even when a later
    match would be valid -- the reference behaviour.
    """
    found = ANSWER_RE.findall((response or "").strip().upper())
    if not found:
        return -1
    idx = ord(found[0]) - ord("A")
    return idx if idx < n_options else -1


def gold_index(doc: Mapping[str, Any]) -> int:
    """Gold from the ``answer`` letter field (as the reference does)."""
    return ord(str(doc["answer"]).strip().upper()) - ord("A")


def score(doc: Mapping[str, Any], response: str) -> dict[str, float]:
    pred = extract_choice(response, len(doc["options"]))
    return {
        "acc": float(pred != -1 and pred == gold_index(doc)),
        "meaningless_rate": float(not is_meaningful(response)),
    }
