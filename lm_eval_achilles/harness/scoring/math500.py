"""MATH-500 protocol (docs/protocols.md, "achilles_math500"): prompt, answer extraction, three-level grading.

Extraction differs from the reference code in one place only (docs/protocols.md): ``\\boxed{...}``
is read with balanced braces, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}`` instead of the
truncated ``\\frac{1``. The other patterns are the reference's, in its order.

Grading follows the paper's three levels (the PRM800K grader): (1) Hendrycks' MATH string
normalisation, (2) an advanced normalisation (units, words, LaTeX to text), (3) element-wise
comparison of tuples/intervals with sympy. sympy runs under a time limit (the reference had none, and
``simplify`` can run for minutes on adversarial output); a time-out counts as "not equal". Before
that, a size bound rejects at once any answer that would make sympy compute a huge number
(``9**9**9``), which no time limit can interrupt inside C.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from lm_eval_achilles.harness.scoring.quality import is_meaningful

PROMPT = "Solve this math problem step by step:\n\n{problem}\n\nSolution:"
#: seconds allowed for one sympy equivalence check
SYMPY_TIME_LIMIT = 5.0


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
# level 3: tuples/intervals and sympy

_FRAC_RE = re.compile(r"^-?[0-9]+\.?/0*[1-9][0-9]*\.?$")
T = TypeVar("T")


class SympyTimeout(Exception):
    """A sympy check ran past its time limit."""


def run_with_time_limit(fn: Callable[[], T], seconds: float | None) -> T:
    """Run ``fn`` with a wall-clock limit; raise :class:`SympyTimeout` when it is exceeded.

    In the main thread a SIGALRM timer interrupts the computation itself. Elsewhere (or when another
    timer is already armed) the call runs in a daemon thread that is abandoned on time-out -- the
    result is still "not equal", the leftover thread only costs CPU until it finishes.
    """
    if not seconds or seconds <= 0:
        return fn()
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0:

            def _raise(signum, frame):
                raise SympyTimeout()

            previous = signal.signal(signal.SIGALRM, _raise)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                return fn()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
    box: dict = {}

    def _target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    worker = threading.Thread(target=_target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise SympyTimeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


#: characters an expression may hold to reach sympy (parse_expr runs Python: no ``<<``, ``%``, ``|``, ...)
_SYMPY_CHARS = re.compile(r"^[0-9A-Za-z\s+\-*/^().,!_]*$")
#: the only factorials allowed: of a literal with at most three digits (``999!`` has 2565 digits)
_SMALL_FACTORIAL = re.compile(r"(?<![0-9.])[0-9]{1,3}!")
#: a literal such as ``1e999999999``: its decimal exponent has four digits or more
_BIG_DECIMAL_EXPONENT = re.compile(r"[0-9.][eE][+-]?[0-9]{4,}")
#: bounds on what sympy may compute exactly: |exponent| and decimal digits of any number
MAX_EXPONENT = 10_000
MAX_DIGITS = 10_000


def _sympy_allowed(expr: str) -> bool:
    """Cheap textual guards before sympy sees the expression.

    The first three are PRM800K's (at most two unknown letters, no ``^{``/``^(``, no ``^`` towers or
    multi-digit ``^`` exponents). The rest keep ``parse_expr`` from computing anything big while it
    parses: only plain arithmetic characters, factorials of small literals, decimal exponents below
    1000, and no function that
    ``parse_expr(..., evaluate=False)`` would still evaluate (``N(E, 9**9)`` or ``rf(9, 10**8)`` run at
    parse time; ``sqrt`` and ``ln`` stay unevaluated)."""
    letters = set(re.findall(r"[a-zA-Z]", expr.replace("sqrt", "").replace("frac", "")))
    if len(letters) > 2:
        return False
    if "^{" in expr or "^(" in expr:
        return False
    if re.search(r"\^[0-9]+\^", expr) or re.search(r"\^[0-9][0-9]+", expr):
        return False
    if not _SYMPY_CHARS.match(expr) or expr.count("!") != len(_SMALL_FACTORIAL.findall(expr)):
        return False
    if _BIG_DECIMAL_EXPONENT.search(expr):  # mpmath expands 1e999999999 into an exact integer
        return False
    from sympy.parsing.sympy_parser import EvaluateFalseTransformer

    namespace = _sympy_namespace()
    for name in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", expr):
        if callable(namespace.get(name)) and name not in EvaluateFalseTransformer.functions:
            return False
    return True


_NAMESPACE: dict = {}


def _sympy_namespace() -> dict:
    """The names ``parse_expr`` resolves (``from sympy import *``), computed once."""
    if not _NAMESPACE:
        exec("from sympy import *", _NAMESPACE)  # noqa: S102 - a fixed import, no user input
    return _NAMESPACE


class TooLarge(Exception):
    """An expression would make sympy compute a number beyond :data:`MAX_DIGITS` digits."""


def height_log10(node) -> float | None:
    """Upper bound on log10 of the height (max of |numerator|, |denominator|) of ``node``'s exact value,
    or None when it is not a plain number; raises :class:`TooLarge` on a power or factorial sympy
    should not compute. ``node`` is parsed with ``evaluate=False``, so nothing has been computed yet:
    ``9**9**9`` is ``Pow(9, Pow(9, 9))``, whose exponent bound 9**9 exceeds :data:`MAX_EXPONENT`."""
    import math

    import sympy

    children = [height_log10(arg) for arg in node.args]  # every subtree is checked, symbolic or not
    if node.is_Integer or node.is_Rational:
        return math.log10(max(abs(int(node.p)), abs(int(node.q)), 1))
    if node.is_Float:
        x = abs(float(node))
        return abs(math.log10(x)) if x not in (0.0, math.inf) else (0.0 if x == 0.0 else math.inf)
    if node.is_NumberSymbol or node is sympy.I:
        return 1.0
    if any(c is None for c in children):
        bounds = None
    else:
        bounds = children
    if isinstance(node, sympy.Pow):
        base, exponent = children
        if exponent is not None:
            if exponent > math.log10(MAX_EXPONENT):
                raise TooLarge(f"exponent up to 10^{exponent:.0f}")
            if base is not None:
                digits = 10.0**exponent * base
                if digits > MAX_DIGITS:
                    raise TooLarge(f"a power of about {digits:.0f} digits")
                return digits
        return None
    if isinstance(node, sympy.factorial):
        (n,) = children
        if n is not None:
            value = 10.0**n
            if value > 1000:
                raise TooLarge(f"factorial of up to {value:.0f}")
            return value * max(math.log10(value), 1.0)
        return None
    if bounds is None:
        return None
    if isinstance(node, sympy.Mul):
        return sum(bounds)
    if isinstance(node, sympy.Add):  # H(a + b) <= 2 H(a) H(b)
        return sum(bounds) + math.log10(2) * (len(bounds) - 1)
    return None


def _sympy_zero(expr: str) -> bool:
    import sympy
    from sympy.parsing import sympy_parser

    transformations = sympy_parser.standard_transformations + (sympy_parser.implicit_multiplication_application,)
    text = expr.replace("^", "**")
    # parse without evaluating first, bound every power, then parse for real
    height_log10(sympy_parser.parse_expr(text, transformations=transformations, evaluate=False))
    parsed = sympy_parser.parse_expr(text, transformations=transformations)
    return sympy.simplify(parsed) == 0


def sympy_equal(gold: str, pred: str, time_limit: float | None = SYMPY_TIME_LIMIT) -> bool:
    """``simplify((gold) - (pred)) == 0`` for small expressions; False on parse errors, numbers too
    large to compute (:class:`TooLarge`, decided before sympy computes anything) and time-outs."""
    expr = f"({gold})-({pred})"
    if not _sympy_allowed(expr):
        return False
    try:
        return bool(run_with_time_limit(lambda: _sympy_zero(expr), time_limit))
    except SympyTimeout:
        return False
    except Exception:  # unparsable model output is simply "not equal"
        return False


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
