"""Stage 2 of the paper (Algorithm 2): the shortest prefix of the ranking whose masking raises
perplexity on the test text by at least epsilon orders of magnitude.

Two walks over the prefixes (docs/method.md, "Stage 2"): the paper's ``linear`` one (1, 2, 3, ... steps)
and ``galloping`` (1, 2, 4, 8, ... steps until one crosses, then bisection inside the bracket), which
returns the same prefix whenever the curve is monotone and falls back to the linear walk below the
crossing when the points it measured are not. Both are pure functions over an oracle (prefix index ->
mean NLL), :func:`linear_walk` and :func:`galloping_walk`; :func:`greedy_search` gives them the model.
Several candidate prefixes are evaluated in one batched forward (a different mask per batch row).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.defaults import EPSILON, MAX_STEPS, SEARCH, SEARCH_BATCH_SIZE, SEARCHES, STEP
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.perplexity import PerplexityChange, baseline_nll, delta, evaluate_sets, ppl
from lm_eval_achilles.mask.mask_file import Neuron, distinct
from lm_eval_achilles.mask.masking import validate_neurons

if TYPE_CHECKING:  # the config imports the rankers, which need nothing from here: typing only
    from lm_eval_achilles.locator.config import LocatorConfig

#: The galloping search calls the measured curve non-monotone when a prefix's Delta lies more than this
#: fraction of epsilon below the Delta of a shorter measured prefix (or below epsilon after a shorter
#: prefix crossed); it then falls back to the linear walk below the crossing.
MONOTONE_TOLERANCE = 0.1


@dataclass
class SearchResult(PerplexityChange):
    size: int  # number of ranking entries in the critical prefix (0 if not found)
    neurons: list[Neuron]  # distinct channels of that prefix
    baseline_nll: float
    masked_nll: float
    stopping_reason: str  # "threshold", "max_steps_reached", "ranking_exhausted" or "patience"
    curve: list[tuple[int, float]] = field(default_factory=list)  # (n, mean NLL) sorted by n, n = 0 the baseline
    search: str = "linear"  # "linear" or "galloping"
    #: galloping: whether the measured points were monotone (False: it fell back to the linear walk)
    monotone: bool | None = None
    note: str = ""  # galloping: where the curve was not monotone
    forward_passes: int = 0  # batched forwards of masked sets (the baseline's not counted)
    seconds: float = 0.0

    def curve_ppl(self) -> list[list[float]]:
        return [[n, ppl(nll)] for n, nll in self.curve]


# ---------------------------------------------------------------------------------- the pure walks
#: ``measure(indices) -> mean NLLs``: the oracle. Index s (1..count) is the prefix of s steps.
Measure = Callable[[list[int]], Sequence[float]]


@dataclass
class Walk:
    """What a walk over prefix indices 1..count found: ``found`` is the first crossing index (None: none),
    ``points`` every index measured (-> mean NLL)."""

    found: int | None
    points: dict[int, float]
    monotone: bool | None = None
    note: str = ""
    #: "patience" when the walk stopped early because Delta had stopped rising (no crossing found)
    stopped: str = ""


def _same(i: int) -> Hashable:
    return i


def _never(key: Hashable) -> bool:
    return False


def _fit(candidates: Iterable[int], points, key, known, batch_size: int) -> list[int]:
    """The leading candidates that one batched forward evaluates: at most ``batch_size`` new sets; indices
    already measured, sets already known (a memo) and repeats of a set in the batch come free."""
    out, new = [], set()
    for i in candidates:
        k = key(i)
        if i not in points and not known(k) and k not in new:
            if len(new) == batch_size:
                break
            new.add(k)
        out.append(i)
    return out


def _measure(measure: Measure, indices: list[int], points: dict[int, float]) -> None:
    need = [i for i in indices if i not in points]
    if need:
        points.update(zip(need, (float(v) for v in measure(need))))


def linear_walk(
    measure: Measure,
    count: int,
    delta_of: Callable[[float], float],
    epsilon: float,
    batch_size: int = SEARCH_BATCH_SIZE,
    key: Callable[[int], Hashable] = _same,
    known: Callable[[Hashable], bool] = _never,
    stop: int | None = None,
    points: dict[int, float] | None = None,
    patience: int | None = None,
) -> Walk:
    """The paper's walk: indices 1, 2, 3, ... up to ``stop`` (default ``count``), one batch of consecutive
    indices per forward, stopping after the batch that holds the first crossing (Delta >= epsilon).
    ``points`` already measured are reused (the galloping fallback).

    ``patience`` (beyond the paper; None: off) stops the walk, with no crossing, once ``patience``
    successive indices have passed without a new highest Delta (:func:`stalled`): on a model with no
    critical set the walk then ends long before ``count``. It can miss a crossing that comes after a
    long plateau, so it is the user's choice, and the result says it stopped (``stopped="patience"``)."""
    points = {} if points is None else points
    stop = count if stop is None else stop
    i = 1
    while i <= stop:
        chunk = _fit(range(i, stop + 1), points, key, known, batch_size)
        _measure(measure, chunk, points)
        hits = [j for j in chunk if delta_of(points[j]) >= epsilon]
        if hits:
            return Walk(hits[0], points)
        i = chunk[-1] + 1
        if patience is not None and i <= stop and stalled([delta_of(points[j]) for j in range(1, i)], patience):
            return Walk(None, points, stopped="patience")
    return Walk(None, points)


def stalled(deltas: Sequence[float], patience: int) -> bool:
    """Whether the last ``patience`` of ``deltas`` (the walk's prefixes 1, 2, ... in order) all lie at or
    below the highest Delta before them: the curve has not risen for ``patience`` prefixes."""
    if len(deltas) <= patience:
        return False
    return max(deltas[-patience:]) <= max(deltas[:-patience])


def walked(points: Collection[int]) -> int:
    """The longest run 1..k of indices that were all measured (what a stopped linear walk covered)."""
    k = 0
    while k + 1 in points:
        k += 1
    return k


def doublings(count: int) -> list[int]:
    """1, 2, 4, ... below ``count``, then ``count`` (the cap: under monotonicity, no crossing there means none)."""
    out, s = [], 1
    while s < count:
        out.append(s)
        s *= 2
    return [*out, count]


def non_monotone(points: dict[int, float], delta_of, epsilon: float, tolerance: float = MONOTONE_TOLERANCE) -> str:
    """Why the measured points are not a monotone curve, as far as the answer can tell ("" when they are):
    a prefix below epsilon after a shorter one crossed, or a prefix below epsilon whose Delta is more than
    ``tolerance`` x epsilon below a shorter prefix's (where the curve fell once, an unmeasured prefix may
    cross and fall back). Past the crossing, ups and downs that stay above epsilon are the phase
    transition's, not a sign against the answer: not counted."""
    top, top_at, crossed = -math.inf, 0, None  # among masked prefixes (a dip below the baseline is no sign)
    for i in sorted(points):
        d = delta_of(points[i])
        if crossed is not None and d < epsilon:
            return f"prefix {i} is below epsilon (Delta {d:.3g}) after prefix {crossed} crossed"
        if d < epsilon and top - d > tolerance * epsilon:
            return f"Delta falls from {top:.3g} at prefix {top_at} to {d:.3g} at prefix {i}"
        if d >= epsilon and crossed is None:
            crossed = i
        if d > top:
            top, top_at = d, i
    return ""


def galloping_walk(
    measure: Measure,
    count: int,
    delta_of: Callable[[float], float],
    epsilon: float,
    batch_size: int = SEARCH_BATCH_SIZE,
    key: Callable[[int], Hashable] = _same,
    known: Callable[[Hashable], bool] = _never,
    tolerance: float = MONOTONE_TOLERANCE,
    patience: int | None = None,
    exhaustive: bool = True,
    at_most: int | None = None,
) -> Walk:
    """Indices 1, 2, 4, 8, ... (and ``count``) until one crosses epsilon, ``batch_size`` of them per forward;
    then bisection inside the bracket (lo, hi], lo the longest measured prefix below epsilon: ``batch_size``
    evenly spaced cut points per forward (all of the bracket when it fits one forward), until hi = lo + 1.

    On a monotone curve this is the linear walk's answer (the first crossing), in about
    log2(count) / log2(batch_size + 1) forwards. When the measured points are not monotone
    (:func:`non_monotone`) the linear walk runs over 1..hi (1..count when no doubling crossed, decided
    after all of them), reusing the points measured, so the answer is the linear walk's again;
    ``monotone`` and ``note`` say so.
    ``patience`` is passed to that walk when nothing crossed (below a crossing the walk runs to it).

    ``exhaustive=False`` (the looks of ``--samples auto``) skips the linear walk when no measured prefix
    crossed: the answer is then "none among the doublings", not a proof that no prefix crosses.
    ``at_most`` (the later looks of ``--samples auto``, which only ask whether a crossing comes at or before
    an index already found on an earlier ranking) measures ``at_most`` first: if it does not cross, the
    walk ends with none found (``note`` says so); if it does, ``at_most - 1`` next: not crossing, ``at_most``
    is the answer, crossing, phase 2 bisects below it. Prefixes whose sets the memo (``known``) holds are
    read first and count as measured, free."""
    points: dict[int, float] = {}

    def bracket() -> tuple[int, int | None]:
        hits = [i for i in points if delta_of(points[i]) >= epsilon]
        hi = min(hits) if hits else None
        below = [i for i in points if hi is None or i < hi]
        return max(below, default=0), hi

    def fallback(why: str) -> Walk:
        hi = bracket()[1]
        stop = patience if hi is None else None  # below a crossing the walk runs to it
        walk = linear_walk(measure, count, delta_of, epsilon, batch_size, key, known, hi, points, patience=stop)
        if walk.stopped:
            upto = f"1..{walked(points)} decided, stopped there by --patience {patience}"
        else:
            upto = (f"1..{hi}" if hi is not None else f"all {count} prefixes") + " decided"
        return Walk(walk.found, points, False, f"not monotone ({why}): the linear walk over {upto}", walk.stopped)

    gallop = doublings(count)
    why = ""
    # every prefix whose set the memo knows comes free (a later search on a similar ranking reuses them)
    _measure(measure, [i for i in range(1, count + 1) if known(key(i))], points)
    if at_most is not None:
        _measure(measure, [at_most], points)
        if bracket()[1] is None:
            return Walk(None, points, None, f"no crossing at or before prefix {at_most} (not walked further)")
        if at_most > 1:
            _measure(measure, [at_most - 1], points)
    if bracket()[1] is not None:  # a crossing is known already: straight to the bisection below it
        gallop = []
        why = non_monotone(points, delta_of, epsilon, tolerance)
        if why:
            return fallback(why)
    while gallop:  # phase 1: double until a crossing (or the cap)
        chunk = _fit(gallop, points, key, known, batch_size)
        _measure(measure, chunk, points)
        gallop = gallop[len(chunk) :]
        why = non_monotone(points, delta_of, epsilon, tolerance)
        crossed = bracket()[1] is not None
        if why and crossed:
            return fallback(why)
        if crossed:
            break
    lo, hi = bracket()
    if hi is None:  # no doubling crossed, nor the cap
        if not exhaustive:
            return Walk(None, points, not why, "no measured prefix crossed (not walked further)")
        if why:
            return fallback(why)
    while hi is not None and hi - lo > 1:  # phase 2: k-ary bisection of (lo, hi]
        inner = range(lo + 1, hi)
        chunk = _fit(inner, points, key, known, batch_size)
        if len(chunk) < len(inner):
            gap = hi - lo
            chunk = sorted({lo + gap * j // (batch_size + 1) for j in range(1, batch_size + 1)} - {lo, hi})
        _measure(measure, chunk, points)
        why = non_monotone(points, delta_of, epsilon, tolerance)
        if why:
            return fallback(why)
        lo, hi = bracket()
    return Walk(hi, points, True)


# ------------------------------------------------------------------------------------- the model
def greedy_search(
    model,
    input_ids: torch.Tensor,
    ranking: Sequence[Neuron],
    epsilon: float = EPSILON,
    step: int = STEP,
    max_steps: int = MAX_STEPS,
    scale: float = 0.0,
    batch_size: int = SEARCH_BATCH_SIZE,
    progress: bool = True,
    memo: dict[frozenset, float] | None = None,
    search: str = SEARCH,
    patience: int | None = None,
    exhaustive: bool = True,
    at_most: int | None = None,
) -> SearchResult:
    """The shortest prefix ``ranking[:s*step]`` (s = 1 .. max_steps) with Delta >= epsilon, found by the
    ``search`` walk (``"linear"``: the paper's; ``"galloping"``: see :func:`galloping_walk`).

    ``batch_size`` distinct sets go into one batched forward. Prefixes that mask the same channels
    (``granularity=position`` repeats a channel at several positions) are evaluated once, and so is
    any set already in ``memo`` (kept by the caller for this model, text and scale; the sets evaluated
    here are added to it). The linear walk evaluates the batch that contains the crossing whole, so the
    curve also shows a few points past the critical size (the phase transition); every measured point
    is kept in ``curve``, sorted by n. A NaN/inf masked perplexity is a collapse (Delta = inf, see
    :func:`~lm_eval_achilles.locator.perplexity.delta`); a non-finite baseline is an error.

    ``patience`` (None: off) ends a linear walk with no crossing once Delta has not risen for that many
    prefixes (``stopping_reason="patience"``, see :func:`linear_walk`); ``exhaustive=False`` and
    ``at_most`` (a prefix length in entries) are the cheap looks of ``--samples auto`` (:func:`galloping_walk`;
    the linear walk ignores them). The unmasked baseline is kept in ``memo`` too, under the empty set."""
    if step < 1:
        raise AchillesError(f"step must be >= 1, got {step}")
    if search not in SEARCHES:
        raise AchillesError(f"unknown search {search!r}; choose {' or '.join(SEARCHES)}")
    started = time.perf_counter()
    memo = {} if memo is None else memo
    if frozenset() not in memo:
        memo[frozenset()] = baseline_nll(model, input_ids)
    baseline = memo[frozenset()]
    prefixes: list[int] = []
    for s in range(1, max_steps + 1):
        n = min(s * step, len(ranking))
        if prefixes and n == prefixes[-1]:
            break
        prefixes.append(n)
    count = len(prefixes)
    sizes = validate_neurons(model, distinct(ranking[: prefixes[-1]])) if prefixes else {}
    keys, seen, done = [], set(), 0  # the set of channels each prefix masks
    for n in prefixes:
        seen.update(Neuron(r.module, r.channel) for r in ranking[done:n])
        keys.append(frozenset(seen))
        done = n
    forwards = 0
    if progress:
        tqdm.write(announcement(search, count, batch_size, epsilon, patience))
    # no ETA: the walk usually stops long before the cap, and an ETA for all of it would mislead
    fmt = "{desc}: {n_fmt} prefixes evaluated [{elapsed}, {rate_fmt}]"
    with tqdm(desc=f"stage 2: {search} search", disable=not progress, bar_format=fmt, unit=" prefix") as bar:

        def measure(indices: list[int]) -> list[float]:
            nonlocal forwards
            before = len(memo)
            nlls = evaluate_sets(
                model,
                input_ids,
                [sorted(keys[i - 1]) for i in indices],
                scale=scale,
                batch_size=batch_size,
                sizes=sizes,
                memo=memo,
            )
            forwards += math.ceil((len(memo) - before) / batch_size)
            bar.update(len(indices))
            return nlls

        common = dict(key=lambda i: keys[i - 1], known=lambda k: k in memo, patience=patience)
        if search == "galloping":
            bound = None if at_most is None else next((i for i, n in enumerate(prefixes, 1) if n >= at_most), count)
            walk = galloping_walk(
                measure,
                count,
                lambda v: delta(v, baseline),
                epsilon,
                batch_size,
                **common,
                exhaustive=exhaustive,
                at_most=bound,
            )
        else:
            walk = linear_walk(measure, count, lambda v: delta(v, baseline), epsilon, batch_size, **common)
    curve: list[tuple[int, float]] = [(0, baseline)] + [(prefixes[i - 1], walk.points[i]) for i in sorted(walk.points)]
    if walk.found is not None:
        n, nll = prefixes[walk.found - 1], walk.points[walk.found]
        reason = "threshold"
    else:
        n, nll = curve[-1]
        reason = "ranking_exhausted" if prefixes and prefixes[-1] == len(ranking) else "max_steps_reached"
        if walk.stopped:
            reason = walk.stopped
    if progress and walk.note:
        tqdm.write(f"stage 2: {walk.note}")
    return SearchResult(
        size=n if walk.found is not None else 0,
        neurons=distinct(ranking[:n]) if walk.found is not None else [],
        baseline_nll=baseline,
        masked_nll=nll,
        stopping_reason=reason,
        curve=curve,
        search=search,
        monotone=walk.monotone,
        note=walk.note,
        forward_passes=forwards,
        seconds=time.perf_counter() - started,
    )


def announcement(search: str, count: int, batch_size: int, epsilon: float, patience: int | None = None) -> str:
    """The line stage 2 prints before it starts: what it will do, and what a long walk costs."""
    walk = f"{math.ceil(count / batch_size)} batched forwards, minutes on a CPU"
    if patience is not None:
        stop = f"--patience {patience} ends it once Delta has not risen for {patience} prefixes"
    else:
        stop = "--max-steps caps that, --patience N ends it once Delta has not risen for N prefixes"
    if search == "galloping":
        return (
            f"stage 2: galloping search over up to {count} prefixes (sizes 1, 2, 4, ... until Delta >= {epsilon:g}, "
            f"then bisection; {batch_size} per batched forward). If the measured curve is not monotone it walks "
            f"linearly below the crossing (all {count} prefixes when none crosses: {walk}; {stop})"
        )
    line = f"stage 2: linear search over up to {count} prefixes, {batch_size} per batched forward, to the first with Delta >= {epsilon:g}"
    if count > 8 * batch_size:
        line += (
            f"; a model with no critical set walks all of them ({walk}): {stop}, and "
            "--search galloping is cheaper where the curve is monotone"
        )
    return line


def search_ranking(
    model,
    test_ids: torch.Tensor,
    ranking: Sequence,
    cfg: LocatorConfig,
    memo: dict | None = None,
    exhaustive: bool = True,
    at_most: int | None = None,
) -> SearchResult:
    """Stage 2 with a :class:`~lm_eval_achilles.locator.config.LocatorConfig`'s settings (epsilon, step,
    max_steps, scale, search_batch_size, search, patience): the one entry used by ``locate()`` and the studies. ``memo``
    (see :func:`greedy_search`) carries evaluated sets between searches on one text."""
    if not ranking:
        raise AchillesError("the ranking is empty: no neuron changed under the perturbation")
    return greedy_search(
        model,
        test_ids,
        [Neuron(r.module, r.channel) for r in ranking],
        epsilon=cfg.epsilon,
        step=cfg.step,
        max_steps=cfg.max_steps,
        scale=cfg.scale,
        batch_size=cfg.search_batch_size,
        progress=cfg.progress,
        memo=memo,
        search=cfg.search,
        patience=cfg.patience,
        exhaustive=exhaustive,
        at_most=at_most,
    )
