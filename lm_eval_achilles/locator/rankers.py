"""Rankers: each turns a model and a probe text into a ranked list of neurons (same format, same
stage-2 search). ``perturbation`` is the paper's stage 1; the others are baselines for comparison.

:func:`rank_scores` turns per-module score tensors into one ranked list with ``torch.topk`` (no Python
loop over elements). Ties are broken deterministically: module order (forward order), then position,
then channel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from lm_eval_achilles.defaults import ALPHA, RANKING_SIZE, SAMPLES, SEED
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.perturbation import perturbation_scores
from lm_eval_achilles.mask.hooks import Recorder, first_tensor, hooked, output_sizes, replace_first
from lm_eval_achilles.mask.mask_file import RankedNeuron
from lm_eval_achilles.validate import as_float, as_int

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


@dataclass
class RankerConfig:
    alpha: float = ALPHA
    samples: int | str = SAMPLES  # K, or "auto" (locate only: docs/method.md, "Adaptive K")
    seed: int = SEED
    granularity: str = "channel"
    batch_size: int = 25
    k: int = RANKING_SIZE
    progress: bool = True
    #: keystone ranker only: capability type -> prompt texts (None = the built-in KEYSTONE_PROMPTS)
    prompts: dict[str, list[str]] | None = None

    def __post_init__(self):
        """Checked when built, so the CLI and the Python API refuse nonsense before the model is used
        (``alpha=nan`` would otherwise fail only after the whole stage 1)."""
        self.alpha = as_float(self.alpha, "alpha", positive=True)
        if self.samples != "auto":
            self.samples = as_int(self.samples, "samples", minimum=1)
        self.seed = as_int(self.seed, "seed", minimum=0)
        self.batch_size = as_int(self.batch_size, "batch_size", minimum=1)
        self.k = as_int(self.k, "ranking size k", minimum=1)
        if self.granularity not in GRANULARITIES:
            raise AchillesError(f"unknown granularity {self.granularity!r}; choose channel or position")


Ranker = Callable[[object, object, torch.Tensor, list, RankerConfig], list[RankedNeuron]]


def perturbation_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    scores = perturbation_scores(
        model,
        input_ids,
        modules,
        alpha=cfg.alpha,
        samples=cfg.samples,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        progress=cfg.progress,
    )
    return rank_scores(scores, cfg.k, cfg.granularity)


RANKERS: dict[str, Ranker] = {"perturbation": perturbation_ranker}


def get_ranker(method: str) -> Ranker:
    if method not in RANKERS:
        raise AchillesError(f"unknown method {method!r}; choose one of {', '.join(RANKERS)}")
    return RANKERS[method]


# --------------------------------------------------------------------------------------------------
# Baseline rankers (paper section 4.3; docs/method.md, "Rankers") and the keystone ranker.
# All produce the same RankedNeuron list as stage 1, so the same stage-2 search and mask file apply.
# --------------------------------------------------------------------------------------------------


def _channel_sizes(model, modules) -> dict[str, int]:
    sizes = output_sizes(model, modules)
    return {m: sizes[m] for m in modules}


def random_scores(model, modules, seed: int) -> dict[str, torch.Tensor]:
    """One uniform score in (0, 1] per channel of every candidate module, from a generator seeded with
    ``seed``: ranking them is a uniformly random permutation of the pool, reproducible by seed.

    Pool = every output channel of the candidate modules (this project's choice, docs/method.md:
    the same pool as the other rankers). The authors' script instead samples rows of every Linear
    weight incl. ``lm_head``; a channel pool keeps the comparison like for like."""
    gen = torch.Generator().manual_seed(int(seed))
    return {
        m: 1.0 - torch.rand(c, generator=gen, dtype=torch.float64) for m, c in _channel_sizes(model, modules).items()
    }


def random_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    """Random neurons (the paper's random baseline, one trial per seed: use seeds seed, seed+1, ... for
    the 10-trial average). The probe text is not used; ``granularity`` is always channel."""
    return rank_scores(random_scores(model, modules, cfg.seed), cfg.k, "channel")


def _record_outputs(model, modules, run) -> dict[str, torch.Tensor]:
    """Call ``run()`` and keep each module's first 3-D tensor output."""
    with Recorder(model, modules, ndim=3) as rec:
        run()
    return rec.outputs


@torch.no_grad()
def activation_scores(model, input_ids, modules) -> dict[str, torch.Tensor]:
    """|activation| per (position, channel) of each module's output on one clean forward, [T, C] float32."""
    device = next(model.parameters()).device
    acts = _record_outputs(
        model, modules, lambda: model(input_ids=input_ids.to(device), use_cache=False, logits_to_keep=1)
    )
    return {n: acts[n][0].float().abs() for n in modules if n in acts}


def activation_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    """Activation magnitude (AM): ranked by |activation| (the authors' script ranks the signed value,
    see docs/method.md; magnitude is what the paper's text describes)."""
    return rank_scores(activation_scores(model, input_ids, modules), cfg.k, cfg.granularity)


@torch.no_grad()
def signed_activation_scores(model, input_ids, modules) -> dict[str, torch.Tensor]:
    """Signed activation per (position, channel); ranking it keeps only positive values (the authors'
    AM script sorts the signed value, so large negative activations rank last)."""
    device = next(model.parameters()).device
    acts = _record_outputs(
        model, modules, lambda: model(input_ids=input_ids.to(device), use_cache=False, logits_to_keep=1)
    )
    return {n: acts[n][0].float() for n in modules if n in acts}


def activation_signed_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    """AM as the authors' code does it (signed value, descending): a reference-compatible variant."""
    return rank_scores(signed_activation_scores(model, input_ids, modules), cfg.k, cfg.granularity)


def gradient_scores(model, input_ids, modules) -> dict[str, torch.Tensor]:
    """|d loss / d output| per (position, channel) of every module, [T, C] float32.

    loss = mean next-token NLL of the text (d PPL = PPL * d loss, so the ranking by perplexity gradient
    is the same). Every hooked output gets a zero tensor *added* (``out + z``, z a leaf requiring grad)
    instead of being replaced by a detached copy: the forward values are unchanged, the graph stays
    connected, and d loss / d z is exactly the total derivative of the loss with respect to that
    module's output through all downstream paths. The authors' script detaches every hooked output,
    so only o_proj/down_proj get a gradient and all layers get the same one (docs/method.md, "Rankers").
    ``torch.autograd.grad`` asks only for the z's, so no parameter ``.grad`` is touched."""
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    probes: dict[str, torch.Tensor] = {}

    def make(name):
        def hook(_m, _i, output):
            t = first_tensor(output)
            if not isinstance(t, torch.Tensor) or t.dim() != 3 or not t.is_floating_point():
                return None
            z = torch.zeros_like(t, requires_grad=True)
            probes[name] = z
            return replace_first(output, t + z)

        return hook

    with hooked(model, {name: make(name) for name in modules}), torch.enable_grad():
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        loss = -logp.gather(-1, ids[:, 1:, None]).mean()
        names = [n for n in modules if n in probes]
        grads = torch.autograd.grad(loss, [probes[n] for n in names], allow_unused=True)
    out = {}
    for n, g in zip(names, grads):
        out[n] = (
            torch.zeros(probes[n].shape[1:], dtype=torch.float32) if g is None else g[0].detach().float().abs().cpu()
        )
    return out


def gradient_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    """Gradient magnitude (GM): |d loss / d activation| on the probe text, every module its own gradient."""
    return rank_scores(gradient_scores(model, input_ids, modules), cfg.k, cfg.granularity)


#: Prompts of several capability types for the keystone ranker (written for this project).
KEYSTONE_PROMPTS: dict[str, list[str]] = {
    "knowledge": [
        "Question: What is the capital of Australia, and why was it chosen over Sydney and Melbourne?\nAnswer:",
        "The mitochondrion is an organelle found in most eukaryotic cells. Its main function is",
    ],
    "math": [
        "Solve step by step: a train travels 120 km in 1.5 hours. What is its average speed in km per hour?",
        "Compute the derivative of f(x) = 3x^2 + 5x - 7 and evaluate it at x = 2. Show your work.",
    ],
    "code": [
        'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n',
        "# Python: read a CSV file and print the average of the 'price' column\nimport csv\n\nwith open(",
    ],
    "instruction": [
        "Write a short poem about autumn leaves. Use exactly three lines and do not use the letter z.",
        "Summarize the following sentence in five words or fewer: The committee postponed the vote until next week.",
    ],
    "multilingual": [
        "Le chat dort sur le canapé pendant que la pluie tombe doucement sur la ville.",
        "Die Bibliothek der Universität bleibt am Wochenende geschlossen, teilte die Verwaltung mit.",
    ],
}


@torch.no_grad()
def keystone_strengths(
    model, prompts: dict[str, list[torch.Tensor]], modules, progress: bool = False
) -> dict[str, dict[str, torch.Tensor]]:
    """Per capability type, per module: mean over that type's prompts of the mean over positions of
    |activation|, a [C] tensor (the type's activation strength of every channel)."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    total = sum(len(v) for v in prompts.values())
    out: dict[str, dict[str, torch.Tensor]] = {}
    with tqdm(total=total, desc="keystone: prompts", disable=not progress, unit="prompt") as bar:
        for kind, ids_list in prompts.items():
            acc: dict[str, torch.Tensor] = {}
            for ids in ids_list:
                acts = _record_outputs(
                    model, modules, lambda ids=ids: model(input_ids=ids.to(device), use_cache=False, logits_to_keep=1)
                )
                for n, a in acts.items():
                    s = a[0].float().abs().mean(dim=0).cpu()
                    acc[n] = acc[n] + s if n in acc else s
                bar.update(1)
            out[kind] = {n: v / len(ids_list) for n, v in acc.items()}
    return out


def keystone_scores(strengths: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Cross-task activation strength = the minimum over capability types of the type's strength: a
    channel scores high only if it is highly activated for *every* type (consistently), not just one."""
    kinds = list(strengths)
    modules = [m for m in strengths[kinds[0]] if all(m in strengths[k] for k in kinds)]
    return {m: torch.stack([strengths[k][m] for k in kinds]).amin(dim=0) for m in modules}


def keystone_ranker(model, tokenizer, input_ids, modules, cfg: RankerConfig) -> list[RankedNeuron]:
    """Keystone neurons: this project's reading of "Tiny Brains, Giant Impact" (abstract only, see
    docs/method.md, "Rankers"): neurons *consistently highly activated across prompts
    of several capability types*, ranked by cross-task activation strength (:func:`keystone_scores`).
    Prompts: ``cfg.prompts`` (type -> texts) or :data:`KEYSTONE_PROMPTS`; the probe text is added as
    one more type ("probe"). Channel granularity only (positions differ between prompts)."""
    if tokenizer is None:
        raise AchillesError("the keystone ranker needs a tokenizer to encode its prompts")
    texts = cfg.prompts or KEYSTONE_PROMPTS
    prompts = {k: [tokenizer(t, return_tensors="pt").input_ids for t in v] for k, v in texts.items() if v}
    prompts["probe"] = [input_ids]
    return rank_scores(keystone_scores(keystone_strengths(model, prompts, modules, cfg.progress)), cfg.k, "channel")


RANKERS.update(
    {
        "random": random_ranker,
        "activation": activation_ranker,
        "activation_signed": activation_signed_ranker,
        "gradient": gradient_ranker,
        "keystone": keystone_ranker,
    }
)
