"""Symbolic equivalence for MATH-500's third grading level: ``simplify(gold - pred) == 0`` with sympy,
made safe to run on model output.

sympy runs under a time limit (the reference had none, and ``simplify`` can run for minutes on
adversarial output); a time-out counts as "not equal". Before that, textual guards and a size bound
reject at once any answer that would make sympy compute a huge number (``9**9**9``), which no time
limit can interrupt inside C. sympy is imported only when a check runs.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

#: seconds allowed for one sympy equivalence check
SYMPY_TIME_LIMIT = 5.0
#: after the limit, the alarm repeats this often until the check has stopped (a lost alarm is retried)
REFIRE_SECONDS = 0.1
T = TypeVar("T")


class SympyTimeout(Exception):
    """A sympy check ran past its time limit."""


def run_with_time_limit(fn: Callable[[], T], seconds: float | None) -> T:
    """Run ``fn`` with a wall-clock limit; raise :class:`SympyTimeout` when it is exceeded.

    In the main thread a SIGALRM timer interrupts the computation itself. The timer keeps firing
    every :data:`REFIRE_SECONDS` after the limit until ``fn`` stops: an exception raised while Python
    runs a ``__del__`` or a weakref callback is printed and dropped ("Exception ignored in ..."), so a
    single alarm can be lost and the computation would run on unbounded. Elsewhere (or when another
    timer is already armed) the call runs in a daemon thread that is abandoned on time-out -- the
    result is still "not equal", the leftover thread only costs CPU until it finishes.
    """
    if not seconds or seconds <= 0:
        return fn()
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            running = [True]

            def _raise(signum, frame):
                if running[0]:  # a late alarm after fn stopped must not escape into the caller
                    raise SympyTimeout()

            previous = signal.signal(signal.SIGALRM, _raise)
            signal.setitimer(signal.ITIMER_REAL, seconds, min(seconds, REFIRE_SECONDS))
            try:
                return fn()
            finally:
                running[0] = False
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
