"""Rankers: each turns a model and a probe text into a ranked list of neurons (same format, same
stage-2 search). ``perturbation`` is the paper's stage 1; the others are baselines for comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .defaults import ALPHA, RANKING_SIZE, SAMPLES, SEED
from .errors import AchillesError
from .mask import RankedNeuron
from .perturbation import perturbation_scores
from .ranking import rank_scores


@dataclass
class RankerConfig:
    alpha: float = ALPHA
    samples: int = SAMPLES
    seed: int = SEED
    granularity: str = "channel"
    batch_size: int = 25
    k: int = RANKING_SIZE
    progress: bool = True


Ranker = Callable[[object, object, torch.Tensor, list, RankerConfig], list[RankedNeuron]]


def perturbation_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    scores = perturbation_scores(
        model, input_ids, modules, alpha=cfg.alpha, samples=cfg.samples, seed=cfg.seed,
        batch_size=cfg.batch_size, progress=cfg.progress,
    )
    return rank_scores(scores, cfg.k, cfg.granularity)


RANKERS: dict[str, Ranker] = {"perturbation": perturbation_ranker}


def get_ranker(method: str) -> Ranker:
    if method not in RANKERS:
        raise AchillesError(f"unknown method {method!r}; choose one of {', '.join(RANKERS)}")
    return RANKERS[method]
