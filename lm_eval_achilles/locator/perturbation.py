"""Stage 1 of the paper (Algorithm 1): importance = mean |clean - noisy| activation over K noise draws.

Streaming (docs/method.md, "Stage 1"): one clean forward records each candidate module's output once; the K
noisy inputs go through the model in batches, and a forward hook adds ``|noisy - clean|`` summed over
the batch into a running sum per module. Memory is the model, one clean activation set and one batch
of activations; K copies are never kept.

:class:`Perturbation` holds that running state, so samples can be added a few at a time: ``--samples
auto`` (docs/method.md, "Adaptive K") adds samples until the top of the ranking stops changing. The noise
is always drawn in chunks of ``batch_size`` from one seeded generator, however many samples are forwarded
at a time, so the first k samples of any run are the same draws as in a fixed-K run with that seed and
batch size (and a fixed-K run is unchanged by this class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.locator.ranking import rank_scores
from lm_eval_achilles.mask.hooks import first_tensor, hooked

#: ``--samples auto`` (docs/method.md, "Adaptive K"): samples added between two looks at the ranking,
AUTO_CHECK = 5
#: the fewest samples it stops at,
AUTO_MIN = 20
#: the fewest ordered top entries that must be stable (more: ``AUTO_MARGIN`` x the critical prefix),
AUTO_TOP = 8
AUTO_MARGIN = 2
#: the top entries recorded per look (a prefix needing more runs to the cap),
AUTO_KEEP = 64
#: and the cap (the paper's K).
AUTO_CAP = 100


class Perturbation:
    """Stage-1 state on one probe: clean activations, running sums of |noisy - clean|, the noise stream.

    ``cap`` is the most samples this run may draw (K, or the cap of ``--samples auto``): it fixes the
    noise chunks (``batch_size`` each, the last one ``cap mod batch_size``), exactly as a fixed-K run
    with K = cap draws them."""

    def __init__(
        self,
        model,
        input_ids: torch.Tensor,
        modules: Sequence[str],
        alpha: float = 5.0,
        seed: int = 42,
        batch_size: int = 25,
        cap: int = 100,
    ):
        self.model, self.modules, self.alpha, self.batch_size, self.cap = model, list(modules), alpha, batch_size, cap
        self.device = next(model.parameters()).device
        ids = input_ids.to(self.device)
        self.clean: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self._noisy = False
        self.samples = 0  # noisy samples accumulated so far
        self._pending: torch.Tensor | None = None  # drawn noise not yet forwarded
        self._drawn = 0
        self._buffers: dict[tuple, torch.Tensor] = {}
        with torch.no_grad(), hooked(model, {name: self._hook(name) for name in self.modules}):
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
        self._noisy = True
        self.embeds = model.get_input_embeddings()(ids).detach()
        self.gen = torch.Generator(device=self.device).manual_seed(seed)

    def _hook(self, name):
        def hook(_m, _inp, output):
            t = first_tensor(output)
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                return None
            if not self._noisy:
                self.clean[name] = t[0].detach().clone()
                self.sums[name] = torch.zeros(t.shape[1:], dtype=torch.float32, device=t.device)
            elif name in self.clean:
                # |noisy - clean| summed over the batch: the difference in the model's dtype (as the
                # authors' fp16 code), the batch sum accumulated in float32. Two passes over the batch's
                # activations into a reused buffer (no fresh allocation per module and batch); a
                # ``vector_norm(ord=1, dim=0)`` reduction was far slower on the CPU (docs/method.md, "Stage 1").
                diff = torch.sub(t, self.clean[name], out=self._buffer(t))
                self.sums[name] += diff.abs_().sum(dim=0, dtype=torch.float32)
            return None

        return hook

    def _buffer(self, t: torch.Tensor) -> torch.Tensor:
        """A scratch tensor shaped like ``t``, one per shape, reused across modules and batches."""
        key = (tuple(t.shape), t.dtype, t.device)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = torch.empty_like(t, memory_format=torch.contiguous_format)
        return buf

    def _noise(self, n: int) -> torch.Tensor:
        """The next ``n`` noise samples of the stream (drawing whole chunks as a fixed-K run does)."""
        parts = []
        while n > 0:
            if self._pending is None or self._pending.shape[0] == 0:
                b = min(self.batch_size, self.cap - self._drawn)
                shape = (b, *self.embeds.shape[1:])
                self._pending = torch.randn(shape, generator=self.gen, device=self.device, dtype=torch.float32)
                self._drawn += b
            take = self._pending[:n]
            self._pending = self._pending[n:]
            parts.append(take)
            n -= take.shape[0]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.no_grad()
    def add(self, n: int, bar=None) -> None:
        """Forward ``n`` more noisy samples (at most ``batch_size`` per forward pass)."""
        n = min(n, self.cap - self.samples)
        with hooked(self.model, {name: self._hook(name) for name in self.modules}):
            while n > 0:
                b = min(n, self.batch_size)
                noise = self._noise(b)
                noisy = (self.embeds.float() + self.alpha * noise).to(self.embeds.dtype)
                self.model(inputs_embeds=noisy, use_cache=False, logits_to_keep=1)
                self.samples += b
                n -= b
                if bar is not None:
                    bar.update(b)

    def add_until_stable(self, history: list, top: int, granularity: str, bar=None) -> bool:
        """``--samples auto``: add :data:`AUTO_CHECK` samples at a time until the ordered top-``top``
        entries of the ranking are the same at three successive looks (unchanged over two successive
        batches) and at least :data:`AUTO_MIN` samples are in, or the cap is reached. ``history`` keeps
        the top :data:`AUTO_KEEP` entries of every look, so a later call with a larger ``top`` can decide
        on the looks already made. Returns whether the ranking was found stable (False: cap reached)."""

        def stable() -> bool:
            if top > AUTO_KEEP or len(history) < 3 or history[-1][0] < AUTO_MIN:
                return False
            return history[-1][1][:top] == history[-2][1][:top] == history[-3][1][:top]

        while not stable():
            if self.samples >= self.cap:
                return False
            self.add(AUTO_CHECK, bar)
            # ranking the running sums orders exactly as the means (same divisor for every entry)
            entries = rank_scores(self.sums, AUTO_KEEP, granularity)
            history.append((self.samples, [(r.module, r.channel, r.position) for r in entries]))
        return True

    def scores(self) -> dict[str, torch.Tensor]:
        """Mean |noisy - clean| per module, [T, C] float32, in forward (hook firing) order."""
        return {name: self.sums[name] / max(self.samples, 1) for name in self.clean}


@torch.no_grad()
def perturbation_scores(
    model,
    input_ids: torch.Tensor,
    modules: Sequence[str],
    alpha: float = 5.0,
    samples: int = 100,
    seed: int = 42,
    batch_size: int = 25,
    progress: bool = True,
    cap: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per module a [T, C] float32 tensor: mean absolute activation change under Gaussian noise of
    scale ``alpha`` added to the input embeddings at every position (BOS included), K = ``samples``.
    Keys are ordered as the modules fire in the forward pass. Deterministic for a seed and batch size.
    ``cap`` (default K) fixes the noise chunks: the first K samples of a run capped at ``cap`` (what
    ``samples="auto"`` spent) are these."""
    cap = samples if cap is None else cap
    state = Perturbation(model, input_ids, modules, alpha=alpha, seed=seed, batch_size=batch_size, cap=cap)
    with tqdm(total=samples, desc="stage 1: noisy samples", disable=not progress, unit="sample") as bar:
        state.add(samples, bar)
    return state.scores()
