"""HumanEval protocol (docs/protocols.md, "achilles_humaneval"): raw prompt, code extraction rate.

The paper's HumanEval number is the *code extraction rate*: the share of responses from which a
function definition can be pulled out (Table 2 values equal the reference code's extraction rate,
which it counts regardless of the quality filter). ``extraction_rate`` reproduces that;
``extraction_rate_meaningful`` additionally requires the standard quality filter, as the paper's
text describes (it rejects most nested code because 8 spaces of indentation are a run > 5).
Functional correctness (pass@1) is not part of the paper's protocol and is not computed here.
"""

from __future__ import annotations

import re

from lm_eval_achilles.harness.scoring.quality import is_meaningful

FENCE_PATTERNS = (
    re.compile(r"```python\n(.*?)\n```", re.DOTALL),
    re.compile(r"```\n(.*?)\n```", re.DOTALL),
    re.compile(r"```python(.*?)```", re.DOTALL),
    re.compile(r"```(.*?)```", re.DOTALL),
)


def extract_code(response: str) -> str:
    """Code from a response, or "" (steps tried in order on the stripped response).

    1. fenced blocks: for each pattern, the first block, stripped, accepted only if it contains ``def ``;
    2. line scan: from the first line containing ``def `` and ``:``, keep following lines that are
       blank, indented (4 spaces or a tab) or another ``def`` line; stop at the first other line;
    3. the whole response if it contains ``def ``;
    4. "".
    Completions that only continue a function body contain no ``def`` and extract nothing -- that
    is the reference behaviour the paper's number is based on.
    """
    text = (response or "").strip()
    for pattern in FENCE_PATTERNS:
        found = pattern.findall(text)
        if found:
            block = found[0].strip()
            if block and "def " in block:
                return block
    lines = text.split("\n")
    for start, line in enumerate(lines):
        if "def " in line and ":" in line:
            kept = [line]
            for nxt in lines[start + 1 :]:
                if not nxt.strip() or nxt.startswith(("    ", "\t")) or "def " in nxt:
                    kept.append(nxt)
                else:
                    break
            return "\n".join(kept)
    if "def " in text:
        return text
    return ""


def score(response: str) -> dict[str, float]:
    code = extract_code(response)
    meaningful = is_meaningful(response)
    return {
        "extraction_rate": float(bool(code)),
        "extraction_rate_meaningful": float(bool(code) and meaningful),
        "meaningless_rate": float(not meaningful),
    }
