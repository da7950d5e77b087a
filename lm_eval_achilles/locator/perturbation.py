"""Stage 1 of the paper (Algorithm 1): importance = mean |clean - noisy| activation over K noise draws.

Streaming (docs/method.md, "Stage 1"): one clean forward records each candidate module's output once; the K
noisy inputs go through the model in batches, and a forward hook adds ``|noisy - clean|`` summed over
the batch into a running sum per module. Memory is the model, one clean activation set and one batch
of activations; K copies are never kept.

:class:`Perturbation` holds that running state, so samples can be added a few at a time: ``--samples
auto`` (docs/method.md, "Adaptive K") adds samples until the critical set found from the running ranking
stops getting smaller (:func:`auto_decision`). The noise
is always drawn in chunks of ``batch_size`` from one seeded generator, however many samples are forwarded
at a time, so the first k samples of any run are the same draws as in a fixed-K run with that seed and
batch size (and a fixed-K run is unchanged by this class).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import human_bytes
from lm_eval_achilles.locator.ranking import ModuleTop, merge_tops, module_top
from lm_eval_achilles.mask.hooks import Recorder, first_tensor, hooked
from lm_eval_achilles.mask.mask_file import RankedNeuron
from lm_eval_achilles.models.forward import forward, input_device

#: ``--samples auto`` (docs/method.md, "Adaptive K"): samples added between two looks, where stage 2 runs
#: on the running ranking,
AUTO_CHECK = 10
#: the fewest samples it stops at,
AUTO_MIN = 20
#: and the cap (the paper's K).
AUTO_CAP = 100


def auto_decision(looks: Sequence[tuple[int, int]], min_samples: int = AUTO_MIN) -> tuple[bool, int | None]:
    """The ``--samples auto`` rule, judged on the outcome. ``looks`` holds ``(samples, size)`` per look so
    far: the samples in the running ranking, and the distinct channels of the critical set stage 2 found
    from it (0: none found). Every set found is a valid critical set (its Delta crossed epsilon), so the
    look kept is the one with the **smallest** set, the later look on a tie (more samples behind it).
    Stop once a look with at least ``min_samples`` samples found no set smaller than every earlier one:
    more samples stopped making the answer smaller. Returns ``(stop, index of the kept look or None)``."""
    best = None
    for i, (_, size) in enumerate(looks):
        if size and (best is None or size <= looks[best][1]):
            best = i
    if best is None:
        return False, None
    samples, size = looks[-1]
    smaller = size > 0 and all(size < s for _, s in looks[:-1] if s)
    return samples >= min_samples and not smaller, best


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
        self.device = input_device(model)
        ids = input_ids.to(self.device)
        self.clean: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self._noisy = False
        self.samples = 0  # noisy samples accumulated so far
        self._pending: torch.Tensor | None = None  # drawn noise not yet forwarded
        self._drawn = 0
        self._buffers: dict[tuple, torch.Tensor] = {}
        with torch.no_grad(), hooked(model, {name: self._hook(name) for name in self.modules}):
            forward(model, last_logits_only=True, input_ids=ids)
        self._noisy = True
        self.embeds = model.get_input_embeddings()(ids).detach()
        self.gen = torch.Generator(device=self.embeds.device).manual_seed(seed)

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
        """A scratch tensor shaped like ``t``: one of ``batch_size`` rows per activation shape, reused
        across modules and batches (a smaller batch uses its first rows)."""
        key = (tuple(t.shape[1:]), t.dtype, t.device)
        buf = self._buffers.get(key)
        if buf is None:
            shape = (max(self.batch_size, t.shape[0]), *t.shape[1:])
            buf = self._buffers[key] = torch.empty(shape, dtype=t.dtype, device=t.device)
        return buf[: t.shape[0]]

    def _noise(self, n: int) -> torch.Tensor:
        """The next ``n`` noise samples of the stream (drawing whole chunks as a fixed-K run does)."""
        parts = []
        while n > 0:
            if self._pending is None:
                b = min(self.batch_size, self.cap - self._drawn)
                shape = (b, *self.embeds.shape[1:])
                self._pending = torch.randn(shape, generator=self.gen, device=self.embeds.device, dtype=torch.float32)
                self._drawn += b
            take = self._pending[:n]
            self._pending = self._pending[n:] if n < self._pending.shape[0] else None  # no empty view held
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
                # x + alpha * noise in float32, in the noise's own storage (its draws are used once)
                noisy = noise.mul_(self.alpha).add_(self.embeds.float()).to(self.embeds.dtype)
                forward(self.model, last_logits_only=True, inputs_embeds=noisy)
                self.samples += b
                n -= b
                if bar is not None:
                    bar.update(b)

    def scores(self) -> dict[str, torch.Tensor]:
        """Mean |noisy - clean| per module, [T, C] float32, in forward (hook firing) order: a new tensor
        per module (for the studies, which keep the scores); ranking needs no copy (:meth:`tops`)."""
        return {name: self.sums[name] / max(self.samples, 1) for name in self.clean}

    def tops(self, k: int, granularity: str) -> list[ModuleTop]:
        """Each module's top ``k`` by mean score, in forward order: the mean ``sum / K`` is formed one
        module at a time while ranking, so it is the value :meth:`scores` holds, bit for bit."""
        return [module_top(name, self.sums[name], k, granularity, max(self.samples, 1)) for name in self.clean]

    def ranking(self, k: int, granularity: str) -> list[RankedNeuron]:
        return merge_tops(self.tops(k, granularity), k, granularity)


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


# --------------------------------------------------------------------------- memory: estimate and groups


@dataclass
class Stage1Memory:
    """What stage 1 holds beyond the model and its own forward pass (docs/method.md, "Stage 1 memory"):
    per (position, channel) entry of every candidate module, its clean output (the model's dtype,
    ``elem`` bytes) and its float32 running sum; plus, per distinct activation shape, one scratch
    buffer of ``batch`` rows for the differences. ``widths`` are the modules' channels, in the order
    their hooks fire in a forward pass."""

    tokens: int
    widths: dict[str, int]
    elem: int
    batch: int
    hidden: int = 0

    @property
    def inputs(self) -> int:
        """The noisy inputs of one batch: the float32 draws and, in a half-precision model, their cast."""
        return self.batch * self.tokens * self.hidden * (4 + (self.elem if self.elem != 4 else 0))

    @property
    def entries(self) -> int:
        return self.tokens * sum(self.widths.values())

    @property
    def bytes_per_entry(self) -> int:
        return self.elem + 4

    def held(self, modules: Sequence[str] | None = None) -> int:
        names = self.widths if modules is None else modules
        return self.tokens * sum(self.widths[m] for m in names) * self.bytes_per_entry

    def scratch(self, modules: Sequence[str] | None = None) -> int:
        names = self.widths if modules is None else modules
        return self.batch * self.tokens * self.elem * sum({self.widths[m] for m in names})

    def total(self, modules: Sequence[str] | None = None) -> int:
        return self.held(modules) + self.scratch(modules) + self.inputs

    def describe(self) -> str:
        return (
            f"stage 1 memory (beyond the model and its forward pass): {self.tokens} tokens x "
            f"{sum(self.widths.values())} channels = {self.entries} entries x {self.bytes_per_entry} bytes "
            f"= {human_bytes(self.held())}, + {human_bytes(self.scratch() + self.inputs)} scratch and noisy "
            f"inputs for a batch of {self.batch} = {human_bytes(self.total())}"
        )

    def groups(self, budget: int | None) -> list[list[str]]:
        """The modules in forward order, cut into consecutive groups that each fit ``budget`` bytes
        (one group when there is no budget or all fit)."""
        names = list(self.widths)
        if budget is None or self.total() <= budget:
            return [names]
        groups: list[list[str]] = [[]]
        for name in names:
            if groups[-1] and self.total([*groups[-1], name]) > budget:
                groups.append([])
            groups[-1].append(name)
            if self.total([name]) > budget:
                raise AchillesError(
                    f"max_memory {human_bytes(budget)} is below what stage 1 needs for one module "
                    f"({name}: {human_bytes(self.total([name]))}); raise it, or shorten the probe or --batch-size"
                )
        return groups


@torch.no_grad()
def stage1_memory(model, input_ids: torch.Tensor, modules: Sequence[str], batch_size: int) -> Stage1Memory:
    """The estimate for this probe, from one forward pass of 2 tokens (each module's width and dtype)."""
    device = input_device(model)
    with Recorder(model, modules, ndim=3) as rec:
        forward(model, last_logits_only=True, input_ids=input_ids[:, :2].to(device))
    widths = {name: int(t.shape[-1]) for name, t in rec.outputs.items()}
    elem = max((t.element_size() for t in rec.outputs.values()), default=4)
    hidden = int(model.get_input_embeddings()(input_ids[:, :1].to(device)).shape[-1])
    return Stage1Memory(int(input_ids.shape[1]), widths, elem, batch_size, hidden)


def plan(model, input_ids, modules, batch_size: int, max_memory: int | None, progress: bool = True):
    """The memory estimate (printed unless ``progress`` is off) and the groups of modules stage 1 runs
    in, one after the other, to stay under ``max_memory`` bytes."""
    mem = stage1_memory(model, input_ids, modules, batch_size)
    groups = mem.groups(max_memory)
    if progress:
        print(f"[achilles] {mem.describe()}", file=sys.stderr)
        if len(groups) > 1:
            print(
                f"[achilles] stage 1 in {len(groups)} groups of modules to stay under max_memory "
                f"{human_bytes(max_memory)} (each group repeats the clean and noisy forwards; same ranking)",
                file=sys.stderr,
            )
    return mem, groups


@torch.no_grad()
def perturbation_ranking(
    model,
    input_ids: torch.Tensor,
    modules: Sequence[str],
    k: int,
    granularity: str = "channel",
    alpha: float = 5.0,
    samples: int = 100,
    seed: int = 42,
    batch_size: int = 25,
    max_memory: int | None = None,
    progress: bool = True,
) -> list[RankedNeuron]:
    """Stage 1 at a fixed K, ranked: the ranking of :func:`perturbation_scores` without keeping a copy of
    the scores. When the estimate exceeds ``max_memory`` bytes, the modules run in groups (each the
    same seeded noise, so each module's sums are those of one run over all modules); only every
    module's top ``k`` is kept between groups, and the merged ranking is the same, bit for bit."""
    _, groups = plan(model, input_ids, modules, batch_size, max_memory, progress)
    tops: list[ModuleTop] = []
    total = samples * len(groups)
    with tqdm(total=total, desc="stage 1: noisy samples", disable=not progress, unit="sample") as bar:
        for group in groups:
            state = Perturbation(model, input_ids, group, alpha=alpha, seed=seed, batch_size=batch_size, cap=samples)
            state.add(samples, bar)
            tops.extend(state.tops(k, granularity))
            del state
    return merge_tops(tops, k, granularity)
