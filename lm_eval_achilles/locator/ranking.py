"""Scores to a ranked list of neurons: the one pure function every ranker and stage 1 share.

:func:`rank_scores` turns per-module score tensors into one ranked list with ``torch.topk`` (no Python
loop over elements). Ties are broken deterministically: module order (forward order), then position,
then channel."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import RankedNeuron

GRANULARITIES = ("channel", "position")


def rank_scores(scores: Mapping[str, torch.Tensor], k: int, granularity: str = "channel") -> list[RankedNeuron]:
    """Rank neurons by score, highest first.

    ``scores[module]`` is [T, C] (per position and channel) or [C]. With ``granularity="channel"`` a
    channel's score is its maximum over positions and each (module, channel) appears once; with
    ``"position"`` every (module, position, channel) is an entry, as in the paper's counting.
    Scores that are NaN or not above 1e-6 are dropped (as the authors' code does).
    """
    if granularity not in GRANULARITIES:
        raise AchillesError(f"unknown granularity {granularity!r}; choose channel or position")
    names = list(scores)
    values, keys, widths = [], [], []
    offset = 0
    for name in names:
        s = scores[name].float()
        if s.dim() == 1:
            s = s[None]
        if granularity == "channel":
            s = s.amax(dim=0, keepdim=True)
        flat = s.reshape(-1).nan_to_num(nan=0.0)
        top = torch.topk(flat, min(k, flat.numel()))
        values.append(top.values.cpu())
        keys.append(top.indices.cpu() + offset)
        widths.append((name, offset, s.shape[1]))
        offset += flat.numel()
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
