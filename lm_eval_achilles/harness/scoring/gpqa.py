"""GPQA-Diamond protocol (docs/protocols.md, "achilles_gpqa_diamond"): MD5-seeded shuffle, prompt, three-step extraction.

The choice order of each question is fixed by the MD5 of its ``Record ID``: the first 8 hex digits
seed Python's Mersenne Twister, which shuffles ``[correct, incorrect 1, 2, 3]``. Reproducing the
exact order matters because the fallback extractors (a lone letter, a digit anywhere) are biased
towards A -- a different order would change the baseline score.

Following the paper (docs/protocols.md), the standard quality filter runs *before* extraction:
a meaningless response is wrong. ``acc`` uses all three extraction steps; ``acc_strict`` counts only
answers given in the "The answer is (X)" format (no lone-letter or digit fallbacks), with the letter
standing alone (:func:`strict_choice`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval_achilles.harness.scoring.quality import is_meaningful

LETTERS = "ABCD"
INSTRUCTION = '\n\nPlease provide your answer as "The answer is (X)" where X is the correct option letter.'
ANSWER_IS_RE = re.compile(r"ANSWER IS \(?([ABCD])\)?")
#: ``acc_strict``: "answer is" followed by a letter that stands alone -- ``(X)`` in any case, an upper-case
#: X not followed by a letter or digit, or a lower-case x that ends the sentence or line -- so that
#: "the answer is because ..." is not (B) and "the answer is a hard one" is not (A).
STRICT_RE = re.compile(
    r"(?i:answer is) (?:\(([A-Da-d])\)|([A-D])(?![A-Za-z0-9])|([a-d])(?=[.,;:!?]|[ \t]*$))", re.MULTILINE
)


def shuffle_seed(record_id: str) -> int:
    """``int(md5(record_id).hexdigest()[:8], 16)`` -- the first four digest bytes, big-endian."""
    return int(hashlib.md5(record_id.encode("utf-8")).hexdigest()[:8], 16) % (2**32)


def shuffle_choices(record_id: str, choices: Sequence[str]) -> list[str]:
    """The reference order: ``random.Random(seed).shuffle`` of a copy (same as seeding the global RNG)."""
    out = list(choices)
    random.Random(shuffle_seed(record_id)).shuffle(out)
    return out


def record_id(doc: Mapping[str, Any]) -> str:
    """``Record ID``; without one, a stable stand-in (the reference used Python's salted ``hash``,
    which differs between processes, so no order could be reproduced anyway)."""
    rid = doc.get("Record ID")
    if rid:
        return str(rid)
    return "default_" + hashlib.md5(str(doc["Question"]).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Shuffled:
    choices: list[str]
    gold: int


def prepare(doc: Mapping[str, Any]) -> Shuffled:
    """Strip the four answers, drop empty ones, shuffle, and locate the correct one."""
    correct = str(doc["Correct Answer"]).strip()
    raw = [correct] + [str(doc.get(f"Incorrect Answer {i}") or "").strip() for i in (1, 2, 3)]
    choices = [c for c in raw if c]
    if len(choices) < 2 or not correct:
        raise ValueError(f"GPQA record {record_id(doc)!r} has fewer than two non-empty answers")
    shuffled = shuffle_choices(record_id(doc), choices)
    return Shuffled(shuffled, shuffled.index(correct))


def build_prompt(question: str, choices: Sequence[str]) -> str:
    options = ("Options:\n" + "".join(f"({L}) {c}\n" for L, c in zip(LETTERS, choices[:4]))).strip()
    return f"Question: {question}\n\n" + options + INSTRUCTION


def prompt(doc: Mapping[str, Any]) -> str:
    """The question with its answers in the record's shuffled order."""
    return build_prompt(doc["Question"], prepare(doc).choices)


@dataclass(frozen=True)
class Extraction:
    index: int
    #: "answer_is", "letter", "digit" or "none"
    method: str


def extract_choice(response: str, n_choices: int = 4) -> Extraction:
    """Three steps on the upper-cased response, first hit wins.

    1. ``ANSWER IS (X)`` (single literal spaces);
    2. any standalone letter among the first ``min(n, 4)`` of ABCD (this also catches the article
       "a" after upper-casing -- reference behaviour, kept because it is the paper's fallback);
    3. the digit ``"1"``..``"n"`` appearing anywhere, tried in that order ("Step 1" -> A).
    """
    r = (response or "").strip().upper()
    k = min(n_choices, 4)
    hit = ANSWER_IS_RE.findall(r)
    if hit:
        return Extraction(ord(hit[0]) - ord("A"), "answer_is")
    hit = re.findall(r"\b([" + LETTERS[:k] + r"])\b", r)
    if hit:
        return Extraction(ord(hit[0]) - ord("A"), "letter")
    for i in range(k):
        if str(i + 1) in r:
            return Extraction(i, "digit")
    return Extraction(-1, "none")


def strict_choice(response: str, n_choices: int = 4) -> int:
    """Index of the first "answer is X" whose letter stands alone (:data:`STRICT_RE`), or -1.

    Unlike step 1 of :func:`extract_choice` (the paper's, kept for ``acc``), this does not upper-case
    the text first, so a word that merely starts with A-D is never read as a letter. A letter beyond
    the number of choices gives no prediction."""
    hit = STRICT_RE.search((response or "").strip())
    if not hit:
        return -1
    index = ord(next(g for g in hit.groups() if g).upper()) - ord("A")
    return index if index < min(n_choices, 4) else -1


def score(doc: Mapping[str, Any], response: str) -> dict[str, float]:
    """The metrics of one record: its answers shuffled as in the prompt, then :func:`score_choices`."""
    shuffled = prepare(doc)
    return score_choices(shuffled.choices, shuffled.gold, response)


def score_choices(choices: Sequence[str], gold: int, response: str) -> dict[str, float]:
    """The metrics for given (already shuffled) choices and the gold index."""
    meaningful = is_meaningful(response)
    ext = extract_choice(response, len(choices)) if meaningful else Extraction(-1, "none")
    ok = 0 <= ext.index < len(choices) and ext.index == gold
    strict = strict_choice(response, len(choices)) if meaningful else -1
    return {
        "acc": float(ok),
        "acc_strict": float(strict == gold),
        "meaningless_rate": float(not meaningful),
    }
