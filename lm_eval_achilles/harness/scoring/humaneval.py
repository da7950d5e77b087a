"""HumanEval protocol (docs/protocols.md, "achilles_humaneval"): raw prompt, code extraction rate.

The paper's HumanEval number is the *code extraction rate*: the share of responses from which a
function definition can be pulled out (Table 2 values equal the reference code's extraction rate,
which it counts regardless of the quality filter). ``extraction_rate`` reproduces that;
``extraction_rate_meaningful`` additionally requires the standard quality filter, as the paper's
text describes (it rejects most nested code because 8 spaces of indentation are a run > 5).

Functional correctness (``pass_at_1``) is not part of the paper's protocol; it is added, computed only
when the user opts in to executing model-written code (:mod:`.code_exec`), on the program
:func:`check_program` builds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lm_eval_achilles.harness.scoring import code_exec
from lm_eval_achilles.harness.scoring.quality import is_meaningful

#: lm-eval's ``humaneval`` task stops generation here; this task generates without stop sequences, so
#: a completion that continues the prompt is cut at these (and at a closing code fence) before running
CONTINUATION_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```")

FENCE_PATTERNS = (
    re.compile(r"```python\n(.*?)\n```", re.DOTALL),
    re.compile(r"```\n(.*?)\n```", re.DOTALL),
    re.compile(r"```python(.*?)```", re.DOTALL),
    re.compile(r"```(.*?)```", re.DOTALL),
)


def prompt(doc: Mapping[str, Any]) -> str:
    """The problem's prompt (signature and docstring), as-is."""
    return doc["prompt"]


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


def completion(doc: Mapping[str, Any], response: str) -> str:
    """What follows the prompt in the executed program.

    If the extracted code defines the entry point (``def <entry_point>(``), that code: placed after the
    prompt, it replaces the prompt's docstring-only definition while keeping the prompt's imports and
    helper functions. Otherwise the response read as a continuation of the prompt (the usual HumanEval
    setting, where the model writes the function body), cut at :data:`CONTINUATION_STOPS`."""
    code = extract_code(response)
    if code and re.search(rf"^\s*def\s+{re.escape(doc['entry_point'])}\s*\(", code, re.MULTILINE):
        return "\n" + code + "\n"
    text = response or ""
    cut = min((i for i in (text.find(stop) for stop in CONTINUATION_STOPS) if i >= 0), default=len(text))
    return text[:cut]


def check_program(doc: Mapping[str, Any], response: str) -> str:
    """prompt + completion + the problem's ``test`` + ``check(entry_point)``, as ``code_eval`` runs it."""
    return doc["prompt"] + completion(doc, response) + "\n" + doc["test"] + "\n" + f"check({doc['entry_point']})"


def pass_at_1(doc: Mapping[str, Any], response: str, timeout: float = code_exec.TIMEOUT) -> float:
    """1.0 if the program passes the problem's tests within ``timeout`` seconds (one greedy sample, so
    pass@1 is the mean of this over problems). Executes model-written code: callers check the opt-in."""
    return float(code_exec.run_program(check_program(doc, response), timeout).passed)


#: the lm-eval task whose opt-in :func:`score` checks (named in the notice when it is off)
TASK = "achilles_humaneval"


def score(
    doc: Mapping[str, Any], response: str, *, execute: bool | None = None, timeout: float = code_exec.TIMEOUT
) -> dict[str, float]:
    """Extraction metrics, and ``pass_at_1`` when code is executed: ``execute=None`` (the default) means
    "if the user opted in" (:func:`.code_exec.execution_allowed`, both opt-ins of lm-eval's code tasks)."""
    if execute is None:
        execute = code_exec.execution_allowed(TASK)
    code = extract_code(response)
    meaningful = is_meaningful(response)
    out = {
        "extraction_rate": float(bool(code)),
        "extraction_rate_meaningful": float(bool(code) and meaningful),
        "meaningless_rate": float(not meaningful),
    }
    if execute:
        if not doc.get("test"):
            raise ValueError("pass_at_1 needs the problem's 'test' and 'entry_point' fields")
        out["pass_at_1"] = pass_at_1(doc, response, timeout)
    return out
