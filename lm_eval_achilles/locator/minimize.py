"""``achilles locate --minimize``: a smaller critical set than the paper's prefix (docs/method.md, "Minimal set").

The paper's critical set is the shortest *prefix* of the ranking whose masking crosses epsilon; where the
ranking is not sharp the prefix carries neurons that contribute nothing. This module searches, after
stage 2, for a set that still crosses epsilon and is **verified minimal**: Delta >= epsilon, and removing
any single neuron takes Delta below epsilon (the last leave-one-out round shows it). It is never larger
than the prefix. Every candidate set is evaluated in batched forwards, one mask per batch row
(:func:`~lm_eval_achilles.locator.perplexity.evaluate_sets`), each set at most once (memoised), under an
optional budget of evaluated sets.

The search (:func:`minimize`; docs/method.md gives the reasons and measurements):

1. **curve**: the stage-2 curve says how much Delta each prefix neuron added; among those added once Delta
   had reached epsilon / 4, one batch tries dropping the r least useful at once for a grid of r.
2. **augment**: the outside channel (next ranked, not already found dispensable) that raises Delta most is
   added, for more slack in pruning.
3. **prune** (:meth:`Minimizer.prune`): a leave-one-out round gives each neuron's Delta without it; the
   singly removable ones, most dispensable first, are removed as the largest block that still crosses
   (one batch for a grid of block sizes). Repeat until a round finds none: that round is the proof.
4. **exchange** (:meth:`Minimizer.exchange`): the least essential neuron of the minimal set is replaced by
   the best outside channel; if that crosses, it is pruned, and a smaller result is kept. Repeat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.defaults import SEARCH_BATCH_SIZE
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.perplexity import PerplexityChange, baseline_nll, delta, evaluate_sets
from lm_eval_achilles.mask.mask_file import Neuron, distinct
from lm_eval_achilles.mask.masking import validate_neurons

#: Channels beyond the current set that the augment and exchange steps screen: the next entries of the
#: ranking, skipping those the search already removed as dispensable.
POOL = 12


class BudgetExhausted(Exception):
    """The next batch would exceed ``max_evals``."""


@dataclass
class MinimizeResult(PerplexityChange):
    neurons: list[Neuron]
    baseline_nll: float
    masked_nll: float
    method: str
    verified_minimal: bool  # a completed leave-one-out round on exactly this set found no removable neuron
    stopping_reason: str  # "minimal" (no exchange found a smaller set) or "budget"
    sets_evaluated: int
    forward_passes: int
    seconds: float
    start_size: int
    log: list[dict] = field(default_factory=list)


def grid(lo: int, hi: int, n: int) -> list[int]:
    """At most ``n`` distinct integers from ``lo`` to ``hi`` (both included when lo <= hi), dense near
    ``hi``: the block sizes tried in one batch (the largest removals matter most)."""
    if hi < lo:
        return []
    if hi - lo + 1 <= n:
        return list(range(lo, hi + 1))
    return sorted({hi - round((hi - lo) * (j / (n - 1)) ** 2) for j in range(n)})


class Minimizer:
    """The search state: the model and text, a memo of evaluated sets and the budget."""

    def __init__(
        self,
        model,
        input_ids: torch.Tensor,
        epsilon: float,
        baseline: float | None = None,
        scale: float = 0.0,
        batch_size: int = SEARCH_BATCH_SIZE,
        max_evals: int | None = None,
        progress: bool = True,
        memo: dict[frozenset, float] | None = None,
    ):
        self.model, self.ids, self.epsilon, self.scale = model, input_ids, epsilon, scale
        self.batch_size, self.max_evals = batch_size, max_evals
        self.baseline = baseline_nll(model, input_ids) if baseline is None else baseline
        self.memo: dict[frozenset, float] = {} if memo is None else memo  # shared with stage 2 when given
        self.evaluated = 0  # sets evaluated here (the memo may also hold the stage-2 curve's sets)
        self.forward_passes = 0
        self.sizes: dict[str, int] = {}
        self.log: list[dict] = []
        self.discarded: set[Neuron] = set()  # removed as dispensable: not screened as outside channels
        self.best: list[Neuron] | None = None
        self.best_delta = -math.inf
        self.bar = tqdm(total=max_evals, desc="minimize: sets evaluated", disable=not progress, unit="set")

    # ---- evaluation -----------------------------------------------------------------------------
    def nlls(self, sets: Sequence[Sequence[Neuron]]) -> list[float]:
        """Mean NLL under each set; new sets are evaluated ``batch_size`` per batched forward, known ones
        come from the memo. Raises :class:`BudgetExhausted` (evaluating nothing) if the new sets do not fit."""
        keys = [frozenset(s) for s in sets]
        new = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if self.max_evals is not None and self.evaluated + len(new) > self.max_evals:
            raise BudgetExhausted
        if new:
            union = distinct(n for k in new for n in sorted(k))
            missing = [n for n in union if n.module not in self.sizes]
            if missing:
                self.sizes.update(validate_neurons(self.model, missing))
            evaluate_sets(
                self.model,
                self.ids,
                [sorted(k) for k in new],
                scale=self.scale,
                batch_size=self.batch_size,
                sizes=self.sizes,
                progress=self.bar,
                memo=self.memo,
            )
            self.forward_passes += math.ceil(len(new) / self.batch_size)
            self.evaluated += len(new)
        return [self.memo[k] for k in keys]

    def deltas(self, sets: Sequence[Sequence[Neuron]]) -> list[float]:
        out = [delta(v, self.baseline) for v in self.nlls(sets)]
        for s, d in zip(sets, out):  # the smallest crossing set seen: the answer if the budget runs out
            if self.crosses(d) and (self.best is None or (len(s), -d) < (len(self.best), -self.best_delta)):
                self.best, self.best_delta = list(s), d
        return out

    def crosses(self, d: float) -> bool:
        return d >= self.epsilon

    def note(self, step: str, current: Sequence[Neuron]) -> None:
        d = delta(self.memo[frozenset(current)], self.baseline)
        self.log.append({"step": step, "size": len(current), "delta": d, "sets_evaluated": self.evaluated})
        self.bar.set_postfix(size=len(current), delta=f"{d:.3f}")

    # ---- search steps -----------------------------------------------------------------------------
    def drop_block(self, current: list[Neuron], order: Sequence[Neuron], lo: int) -> list[Neuron]:
        """Try removing the first r neurons of ``order`` for r in a grid from ``lo`` to len(order), one
        batch; return ``current`` without the largest block that still crosses (unchanged if none)."""
        sizes = grid(lo, len(order), self.batch_size)
        sizes = [r for r in sizes if r < len(current)]
        if not sizes:
            return current
        cands = [[n for n in current if n not in set(order[:r])] for r in sizes]
        ok = [(r, c) for r, c, d in zip(sizes, cands, self.deltas(cands)) if self.crosses(d)]
        if not ok:
            return current
        r, smaller = max(ok, key=lambda rc: rc[0])
        self.discarded.update(order[:r])
        return smaller

    def leave_one_out(self, current: list[Neuron]) -> list[float]:
        """Delta of ``current`` without each of its neurons (the minimality test)."""
        return self.deltas([current[:i] + current[i + 1 :] for i in range(len(current))])

    def prune(self, current: list[Neuron]) -> tuple[list[Neuron], list[float]]:
        """Block pruning down to a minimal set; returns it and its leave-one-out Deltas (the proof)."""
        while True:
            loo = self.leave_one_out(current)
            removable = sorted(
                (i for i, d in enumerate(loo) if self.crosses(d)), key=lambda i: (-loo[i], -i)
            )  # most dispensable (highest Delta without it) first, ties: the later-ranked one
            if not removable or len(current) == 1:
                return current, loo
            order = [current[i] for i in removable]
            smaller = self.drop_block(current, order, 2)
            if smaller is current:  # no block of >= 2 crosses: drop the single most dispensable neuron
                smaller = [n for n in current if n != order[0]]
                self.discarded.add(order[0])
            current = smaller
            self.note("prune", current)

    def screen(self, base: list[Neuron], pool: Sequence[Neuron]) -> list[tuple[float, Neuron]]:
        """Delta of ``base`` plus each outside channel, best first (one batched evaluation)."""
        outside = [x for x in pool if x not in set(base)]
        return sorted(zip(self.deltas([base + [x] for x in outside]), outside), key=lambda t: -t[0])

    def exchange(
        self, current: list[Neuron], loo: Sequence[float], pool: Sequence[Neuron]
    ) -> tuple[list[Neuron], list[float]] | None:
        """Swap and prune: replace the least essential neuron w of the minimal set ``current`` (size k) by
        the outside channel that gives the highest Delta in its place; if that set crosses, prune it. A
        pruned set smaller than k is returned (with its leave-one-out Deltas); None if the best swap
        does not lead below k."""
        k = len(current)
        w = max(range(k), key=lambda i: (loo[i], i))
        base = current[:w] + current[w + 1 :]
        screened = self.screen(base, pool)
        if not screened or not self.crosses(screened[0][0]):
            return None
        smaller, smaller_loo = self.prune(base + [screened[0][1]])
        return (smaller, smaller_loo) if len(smaller) < k else None


def curve_order(prefix: Sequence[Neuron], curve_nlls: Sequence[float] | None, epsilon: float) -> list[Neuron] | None:
    """The prefix neurons that the stage-2 curve suggests are dispensable, least useful first: those added
    once the curve had risen to epsilon / 4 (before that, cooperative neurons add little each, so a small
    gain says nothing), ordered by the Delta each added. Needs a curve point for every prefix length
    0..len(prefix) (step 1, channel granularity); None without one."""
    if curve_nlls is None or len(curve_nlls) < len(prefix) + 1:
        return None
    d = [(curve_nlls[i] - curve_nlls[0]) / math.log(10) for i in range(len(prefix) + 1)]
    late = [i for i in range(len(prefix)) if d[i] >= epsilon / 4]
    return [prefix[i] for i in sorted(late, key=lambda i: (d[i + 1] - d[i], -i))]


def minimize(
    model,
    input_ids: torch.Tensor,
    prefix: Sequence[Neuron],
    ranking: Sequence[Neuron],
    epsilon: float,
    curve_nlls: Sequence[float] | None = None,
    baseline: float | None = None,
    scale: float = 0.0,
    batch_size: int = SEARCH_BATCH_SIZE,
    max_evals: int | None = None,
    pool: int = POOL,
    progress: bool = True,
    memo: dict[frozenset, float] | None = None,
) -> MinimizeResult:
    """A verified-minimal set that crosses ``epsilon``, no larger than ``prefix`` (the paper's critical set).

    ``ranking`` supplies the outside channels (the first ``pool`` ranked channels not in the set);
    ``curve_nlls[n]`` (mean NLL with the first n prefix neurons masked, n = 0..len(prefix)) orders the
    curve step and seeds the memo; ``memo`` (stage 2's, for this model, text and scale) gives every set
    stage 2 evaluated. With a budget (``max_evals`` sets; ``locate --minimize`` has a default, docs/method.md)
    the best set found so far is returned, ``verified_minimal`` saying whether its leave-one-out round
    completed."""
    prefix = distinct(prefix)
    if not prefix:
        raise AchillesError("nothing to minimize: the critical set is empty (no prefix crossed epsilon)")
    if max_evals is not None and max_evals < 1:
        raise AchillesError(f"max_evals must be >= 1, got {max_evals}")
    t0 = time.perf_counter()
    m = Minimizer(model, input_ids, epsilon, baseline, scale, batch_size, max_evals, progress, memo)
    ranked = distinct(ranking)
    m.memo[frozenset()] = m.baseline  # the empty set is the unmasked model
    if curve_nlls is not None:  # the stage-2 prefixes are already evaluated: seed the memo with them
        for n in range(1, min(len(curve_nlls), len(prefix) + 1)):
            m.memo.setdefault(frozenset(prefix[:n]), float(curve_nlls[n]))

    def outside(current):
        inside = set(current)
        return [n for n in ranked if n not in inside and n not in m.discarded][:pool]

    current, verified, reason, used = prefix, False, "minimal", []
    try:
        d0 = m.deltas([current])[0]
        if not m.crosses(d0):
            raise AchillesError(
                f"the critical set does not cross epsilon = {epsilon} when re-evaluated (Delta {d0:.4f})"
            )
        m.note("prefix", current)
        order = curve_order(prefix, curve_nlls, epsilon)
        if order:
            current = m.drop_block(current, order, 1)
            used.append("curve")
            m.note("curve", current)
        start = current
        if len(current) > 1:
            # the outside channel that adds most: more slack for pruning (kept only if it ends smaller)
            (d, x), *_ = m.screen(current, outside(current)) or [(None, None)]
            if x is not None and d > m.deltas([current])[0]:
                start = current + [x]
                used.append("augment")
                m.note("augment", start)
        pruned, loo = m.prune(start)
        if len(pruned) >= len(prefix) and start is not current:  # the detour did not pay: prune without it
            pruned, loo = m.prune(current)
        current = pruned
        used.append("prune")
        verified = True
        m.note("minimal", current)
        while len(current) > 1:
            found = m.exchange(current, loo, outside(current))
            if found is None:
                break
            (current, loo), verified = found, True
            if "exchange" not in used:
                used.append("exchange")
            m.note("exchange", current)
    except BudgetExhausted:
        reason = "budget"
        if m.best is not None and len(m.best) < len(current) or frozenset(current) not in m.memo:
            current, verified = m.best, False
    finally:
        m.bar.close()
    return MinimizeResult(
        neurons=list(current),
        baseline_nll=m.baseline,
        masked_nll=m.memo[frozenset(current)],
        method="+".join(used),
        verified_minimal=verified,
        stopping_reason=reason,
        sets_evaluated=m.evaluated,
        forward_passes=m.forward_passes,
        seconds=time.perf_counter() - t0,
        start_size=len(prefix),
        log=m.log,
    )
