"""Scores to a ranked list of neurons: the one pure function every ranker and stage 1 share.

:func:`rank_scores` turns per-module score tensors into one ranked list with ``torch.topk`` (no Python
loop over elements). Ties are broken deterministically: module order (forward order), then position,
then channel. It works in two steps, which stage 1 also uses one group of modules at a time
(docs/method.md, "Stage 1"): :func:`module_top` keeps each module's own top k (a few kilobytes), and
:func:`merge_tops` merges those into the ranking. Every module's candidates are found on its own, so
merging the tops of several groups gives exactly the ranking of all modules at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import RankedNeuron

GRANULARITIES = ("channel", "position")


@dataclass
class ModuleTop:
    """One module's best ``k`` entries: scores, flat indices into its (channel or position x channel)
    scores, how many entries it has and its width (channels)."""

    name: str
    values: torch.Tensor
    indices: torch.Tensor
    numel: int
    width: int


def module_top(name: str, scores: torch.Tensor, k: int, granularity: str = "channel", divisor: int = 1) -> ModuleTop:
    """The top ``k`` of one module's scores ([T, C] or [C]), each divided by ``divisor`` first (stage 1
    ranks its running sums: ``sum / K`` is formed here one module at a time, as float32, so no second
    copy of every module's scores is held; for channel granularity only the [C] maxima are divided,
    which is the same: dividing by a positive number keeps the order and rounds monotonically)."""
    s = scores.float()
    if s.dim() == 1:
        s = s[None]
    if granularity == "channel":
        s = s.amax(dim=0, keepdim=True)
    if divisor != 1:
        s = s / divisor
    flat = s.reshape(-1).nan_to_num(nan=0.0)
    top = torch.topk(flat, min(k, flat.numel()))
    return ModuleTop(name, top.values.cpu(), top.indices.cpu(), flat.numel(), s.shape[1])


def merge_tops(tops: Sequence[ModuleTop], k: int, granularity: str = "channel") -> list[RankedNeuron]:
    """The ranking of the modules' tops, given in module (forward) order: highest score first, ties
    by module order, then position, then channel. Scores that are not above 1e-6 are dropped (as the
    authors' code does)."""
    if granularity not in GRANULARITIES:
        raise AchillesError(f"unknown granularity {granularity!r}; choose channel or position")
    values, keys, widths = [], [], []
    offset = 0
    for t in tops:
        values.append(t.values)
        keys.append(t.indices + offset)
        widths.append((t.name, offset, t.width))
        offset += t.numel
    v = torch.cat(values)
    key = torch.cat(keys)
    order = torch.argsort(key)  # module order, then position, then channel ...
    v, key = v[order], key[order]
    order = torch.sort(v, descending=True, stable=True).indices[:k]  # ... kept among equal scores
    v, key = v[order], key[order]
    keep = v > 1e-6
    v, key = v[keep], key[keep]
    starts = torch.tensor([w[1] for w in widths])
    which = torch.searchsorted(starts, key, right=True) - 1
    out = []
    for score, flat_key, m in zip(v.tolist(), key.tolist(), which.tolist()):
        name, start, width = widths[m]
        pos, ch = divmod(flat_key - start, width)
        out.append(RankedNeuron(name, ch, score, pos if granularity == "position" else None))
    return out


def rank_scores(
    scores: Mapping[str, torch.Tensor], k: int, granularity: str = "channel", divisor: int = 1
) -> list[RankedNeuron]:
    """Rank neurons by score (divided by ``divisor``), highest first.

    ``scores[module]`` is [T, C] (per position and channel) or [C]. With ``granularity="channel"`` a
    channel's score is its maximum over positions and each (module, channel) appears once; with
    ``"position"`` every (module, position, channel) is an entry, as in the paper's counting.
    Scores that are NaN or not above 1e-6 are dropped (as the authors' code does).
    """
    if granularity not in GRANULARITIES:
        raise AchillesError(f"unknown granularity {granularity!r}; choose channel or position")
    return merge_tops([module_top(n, s, k, granularity, divisor) for n, s in scores.items()], k, granularity)
