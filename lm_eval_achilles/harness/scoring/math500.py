"""MATH-500 protocol (docs/protocols.md, "achilles_math500"): prompt, answer extraction, three-level grading.

Extraction differs from the reference code in one place only (docs/protocols.md): ``\\boxed{...}``
is read with balanced braces, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}`` instead of the
truncated ``\\frac{1``. The other patterns are the reference's, in its order.

Grading follows the paper's three levels (the PRM800K grader): (1) Hendrycks' MATH string
normalisation, (2) an advanced normalisation (units, words, LaTeX to text), (3) element-wise
comparison of tuples/intervals with sympy. The sympy check itself -- its time limit and the guards
that keep model output from making sympy compute huge numbers -- is :mod:`.sympy_check`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lm_eval_achilles.harness.scoring.quality import is_meaningful
from lm_eval_achilles.harness.scoring.sympy_check import SYMPY_TIME_LIMIT, sympy_equal

PROMPT = "Solve this math problem step by step:\n\n{problem}\n\nSolution:"


def build_prompt(problem: str) -> str:
    return PROMPT.format(problem=problem)


def prompt(doc: Mapping[str, Any]) -> str:
    return build_prompt(doc["problem"])


# --------------------------------------------------------------------------------------------------
# extraction

_FLAGS = re.IGNORECASE | re.MULTILINE
#: reference patterns 3..9 (patterns 1-2 are the boxed forms, replaced by :func:`last_boxed`)
_PATTERNS = tuple(
    re.compile(p, _FLAGS)
    for p in (
        r"(?:final answer|answer|solution|result|conclusion)(?:\s*is\s*|\s*:\s*|\s+)([^.\n]+)",
        r"(?:therefore|thus|hence)(?:\s*,?\s*)(?:the answer is\s*)?([^.\n]+)",
        r"\$([^$]+)\$(?:\s*$|\s*\.|\s*,)",
        r"([+-]?\d+(?:\.\d+)?(?:/\d+)?)\s*$",
        r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*$",
        r"\\frac\{([^}]+)\}\{([^}]+)\}",
        r"([+-]?\d+(?:\.\d+)?(?:/\d+)?(?:\s*[+\-*/]\s*\d+(?:\.\d+)?)*)",
    )
)
_FALLBACK = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\\frac\{[^}]+\}\{[^}]+\})")
_BOXED = re.compile(r"\\boxed\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` whose braces balance, or None."""
    found = None
    for m in _BOXED.finditer(text):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:i]
                    break
    return found


def extract_answer(response: str) -> str:
    """The predicted answer string ("" if none).

    Order: last balanced ``\\boxed{}``; then each reference pattern, where the first pattern with a
    match wins and its *last* match is used (a ``\\frac`` tuple match becomes ``\\frac{a}{b}``);
    then a bottom-up line scan for a number or ``\\frac``.
    """
    text = (response or "").strip()
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    for pattern in _PATTERNS:
        found = pattern.findall(text)
        if found:
            last = found[-1]
            value = f"\\frac{{{last[0]}}}{{{last[1]}}}" if isinstance(last, tuple) else last
            if value.strip():
                return value.strip()
    for line in reversed(text.split("\n")):
        if re.search(r"\d", line) or "\\frac" in line or "\\sqrt" in line or "=" in line:
            m = _FALLBACK.search(line)
            if m:
                return m.group(1)
    return ""


# --------------------------------------------------------------------------------------------------
# level 1: Hendrycks MATH normalisation


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{b}`` -> ``\\frac{1}{b}``."""
    pieces = s.split("\\frac")
    out = pieces[0]
    for piece in pieces[1:]:
        out += "\\frac"
        if piece.startswith("{"):
            out += piece
            continue
        if len(piece) < 2:
            return s
        a, b, rest = piece[0], piece[1], piece[2:]
        out += f"{{{a}}}{{{b}}}{rest}" if b != "{" else f"{{{a}}}{b}{rest}"
    return out


def _fix_a_slash_b(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    if s != f"{a}/{b}":
        return s
    return f"\\frac{{{a}}}{{{b}}}"


def _remove_right_units(s: str) -> str:
    if "\\text{ " in s:
        parts = s.split("\\text{ ")
        assert len(parts) == 2, "ambiguous units"
        return parts[0]
    return s


def _fix_sqrt(s: str) -> str:
    pieces = s.split("\\sqrt")
    out = pieces[0]
    for piece in pieces[1:]:
        if piece and piece[0] != "{":
            piece = "{" + piece[0] + "}" + piece[1:]
        out += "\\sqrt" + piece
    return out


def strip_string(s: str) -> str:
    """Hendrycks' normalisation (may raise AssertionError on ambiguous units)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    s = _remove_right_units(s)
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


_TEXT_WRAP = re.compile(r"^\\text\{(?P<text>.+?)\}$")


def normalize_basic(answer: str | None) -> str | None:
    if answer is None:
        return None
    answer = answer.strip()
    m = _TEXT_WRAP.search(answer)
    if m:
        answer = m.group("text").strip()
    try:
        return strip_string(answer)
    except AssertionError:
        return answer


# --------------------------------------------------------------------------------------------------
# level 2: advanced normalisation

_UNITS = (
    "degree",
    "cm",
    "centimeter",
    "meter",
    "mile",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "foot",
    "feet",
    "inch",
    "yard",
)


def _strip_thousands_commas(expr: str) -> str:
    pattern = re.compile(r"(\d)(,)(\d\d\d)($|\D)")
    while True:
        new = pattern.sub(r"\1\3\4", expr)
        if new == expr:
            return expr
        expr = new


def _is_float(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def _str_is_int(x: str) -> bool:
    try:
        v = float(_strip_thousands_commas(x))
        return abs(v - int(round(v))) <= 1e-7
    except (ValueError, OverflowError):
        return False


def _latex_to_text(expr: str) -> str:
    from pylatexenc.latex2text import LatexNodes2Text

    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac").replace("\\frac", " \\frac")
    return LatexNodes2Text().latex_to_text(expr)


def normalize_advanced(expr: str | None) -> str | None:
    """Units, words and LaTeX removed; lower-case, no spaces or braces (PRM800K-style)."""
    if expr is None:
        return None
    m = _TEXT_WRAP.search(expr)
    if m:
        expr = m.group("text")
    expr = expr.replace("\\%", "").replace("\\$", "").replace("$", "").replace("%", "")
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    expr = expr.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for unit in _UNITS:
        expr = re.sub(f"{unit}(es)?(s)? *(\\^[0-9]+)?", "", expr)
    expr = re.sub(r"\^ *\\circ", "", expr)
    if len(expr) > 0 and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = re.sub(r",\\! *", "", expr)
    if _is_float(expr) and _str_is_int(expr):
        expr = str(int(round(float(expr))))
    if "\\" in expr:
        try:
            expr = _latex_to_text(expr)
        except Exception:  # pylatexenc rejects some malformed LaTeX; keep the raw string then
            pass
    for a, b in (("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*")):
        expr = expr.replace(a, b)
    expr = expr.strip()
    expr = re.sub(r"- *", "-", expr)
    expr = re.sub(r"([0-9]) +([0-9])", r"\1+\2", expr)  # mixed numbers: "7 3/4" -> "7+3/4"
    expr = expr.replace(" ", "").replace("{", "").replace("}", "").lower()
    if _str_is_int(expr):
        expr = str(int(round(float(_strip_thousands_commas(expr)))))
    return expr


# --------------------------------------------------------------------------------------------------
# level 3: tuples/intervals, element by element with sympy (:mod:`.sympy_check`)

_FRAC_RE = re.compile(r"^-?[0-9]+\.?/0*[1-9][0-9]*\.?$")


def split_tuple(expr: str) -> list[str]:
    """``(a,b)`` / ``[a,b)`` ... -> elements; anything else -> ``[expr]``."""
    expr = _strip_thousands_commas(expr)
    if len(expr) > 2 and expr[0] in "([" and expr[-1] in ")]" and not any(ch in expr[1:-1] for ch in "()[]"):
        return [e.strip() for e in expr[1:-1].split(",")]
    return [expr]


@dataclass(frozen=True)
class MathGrade:
    correct: bool
    #: which level decided a correct answer: "basic", "advanced", "sympy"; "" when wrong
    level: str


def grade(pred: str | None, gold: str | None, time_limit: float | None = SYMPY_TIME_LIMIT) -> MathGrade:
    """Three-level equivalence of a predicted and a gold answer."""
    if not pred or not gold:
        return MathGrade(False, "")
    if normalize_basic(pred) == normalize_basic(gold):
        return MathGrade(True, "basic")
    g, p = normalize_advanced(gold), normalize_advanced(pred)
    if g is None or p is None or not p:
        return MathGrade(False, "")
    if g == p:
        return MathGrade(True, "advanced")
    g_elems, p_elems = split_tuple(g), split_tuple(p)
    if len(g_elems) > 1 and (g[0] != p[0] or g[-1] != p[-1]):
        return MathGrade(False, "")
    if len(g_elems) != len(p_elems):
        return MathGrade(False, "")
    for ge, pe in zip(g_elems, p_elems):
        if _FRAC_RE.match(ge) and _FRAC_RE.match(pe):
            ok = ge == pe
        elif _str_is_int(ge) != _str_is_int(pe):
            ok = False
        else:
            ok = sympy_equal(ge, pe, time_limit)
        if not ok:
            return MathGrade(False, "")
    return MathGrade(True, "sympy")


def score(doc: Mapping[str, Any], response: str, *, time_limit: float | None = SYMPY_TIME_LIMIT) -> dict[str, float]:
    """The metrics of one record against its gold ``answer``."""
    pred = extract_answer(response)
    meaningful = is_meaningful(response)
    correct = meaningful and grade(pred, str(doc["answer"] or ""), time_limit).correct
    return {
        "acc": float(correct),
        "extraction_rate": float(bool(pred)),
        "meaningless_rate": float(not meaningful),
    }
