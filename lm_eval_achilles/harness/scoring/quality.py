"""Response-quality ("meaningful") filters of the paper (docs/protocols.md, "The quality filter").

The paper marks degenerate generations (empty, repeated characters, no words) as failed before
scoring. A collapsed (masked) model produces exactly such text, so the filter is what turns
"garbage that happens to contain the letter A" into a 0 score. There are two parameterisations of
one rule set: the standard filter (HumanEval, IFEval, MATH, MGSM, and GPQA in this project) and a
lenient one for SimpleQA's one-line answers. Both are instances of :class:`QualityFilter` so that
there is exactly one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass


def longest_run(text: str) -> int:
    """Length of the longest run of one identical character (any character, spaces included)."""
    best = run = 0
    prev = None
    for ch in text:
        run = run + 1 if ch == prev else 1
        prev = ch
        best = max(best, run)
    return best


@dataclass(frozen=True)
class QualityFilter:
    """One parameterised rule set; :meth:`failures` names every rule a response breaks.

    Rules (applied to ``response.strip()``):

    - ``empty``: nothing left after stripping
    - ``too_short``: fewer than ``min_chars`` characters
    - ``few_alnum``: fewer than ``min_alnum`` alphanumeric characters
    - ``low_diversity``: longer than ``diversity_min_len`` but fewer than ``min_distinct`` distinct
      (lower-cased) characters
    - ``long_run``: a run of identical consecutive characters longer than ``max_run``
    - ``no_alpha_word``: (only if ``require_alpha_word``) no whitespace-separated token contains a letter
    """

    name: str
    min_chars: int
    min_alnum: int
    diversity_min_len: int
    min_distinct: int
    max_run: int
    require_alpha_word: bool

    def failures(self, response: str | None) -> tuple[str, ...]:
        c = (response or "").strip()
        if not c:
            return ("empty",)
        out = []
        if len(c) < self.min_chars:
            out.append("too_short")
        if sum(ch.isalnum() for ch in c) < self.min_alnum:
            out.append("few_alnum")
        if len(c) > self.diversity_min_len and len(set(c.lower())) < self.min_distinct:
            out.append("low_diversity")
        if longest_run(c) > self.max_run:
            out.append("long_run")
        if self.require_alpha_word:
            tokens = c.split()
            if tokens and not any(any(ch.isalpha() for ch in tok) for tok in tokens):
                out.append("no_alpha_word")
        return tuple(out)

    def is_meaningful(self, response: str | None) -> bool:
        return not self.failures(response)


#: The standard filter: HumanEval, IFEval, MATH, MGSM (and GPQA here, as the paper says).
STANDARD = QualityFilter(
    "standard", min_chars=3, min_alnum=2, diversity_min_len=10, min_distinct=3, max_run=5, require_alpha_word=True
)
#: SimpleQA's lenient filter for short first-line answers ("1945" is fine).
SIMPLEQA = QualityFilter(
    "simpleqa", min_chars=1, min_alnum=1, diversity_min_len=3, min_distinct=2, max_run=10, require_alpha_word=False
)


def is_meaningful(response: str | None) -> bool:
    """The standard filter."""
    return STANDARD.is_meaningful(response)


def is_meaningful_simpleqa(response: str | None) -> bool:
    """SimpleQA's lenient filter."""
    return SIMPLEQA.is_meaningful(response)
