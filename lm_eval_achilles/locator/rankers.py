"""Rankers: each turns a model and a probe text into a ranked list of neurons (same format, same
stage-2 search). ``perturbation`` is the paper's stage 1; the others are baselines for comparison.

Every ranker is declared once, with :func:`ranker`, into :data:`RANKERS` (name -> function); all take
``(model, tokenizer, input_ids, modules, cfg)`` with ``cfg`` a
:class:`~lm_eval_achilles.locator.config.LocatorConfig` and return the ranking made by
:func:`~lm_eval_achilles.locator.ranking.rank_scores`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.perturbation import perturbation_ranking
from lm_eval_achilles.locator.ranking import rank_scores
from lm_eval_achilles.mask.hooks import Recorder, first_tensor, hooked, output_sizes, replace_first
from lm_eval_achilles.mask.mask_file import RankedNeuron
from lm_eval_achilles.models.forward import forward, input_device

if TYPE_CHECKING:  # the config imports this module (for the ranker names): typing only
    from lm_eval_achilles.locator.config import LocatorConfig

Ranker = Callable[[object, object, torch.Tensor, list, "LocatorConfig"], list[RankedNeuron]]

#: name -> ranker, in declaration order (the order ``--method`` lists them).
RANKERS: dict[str, Ranker] = {}


def ranker(name: str):
    """Declare a ranker under ``name`` (once: a second declaration of a name is a programming error)."""

    def register(fn: Ranker) -> Ranker:
        if name in RANKERS:
            raise RuntimeError(f"ranker {name!r} declared twice")
        RANKERS[name] = fn
        return fn

    return register


def get_ranker(method: str) -> Ranker:
    if method not in RANKERS:
        raise AchillesError(f"unknown method {method!r}; choose one of {', '.join(RANKERS)}")
    return RANKERS[method]


@ranker("perturbation")
def perturbation_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """The paper's stage 1 at a fixed K (``samples="auto"`` needs the stage-2 search between looks: it
    runs through :func:`~lm_eval_achilles.locator.locate.rank_and_search`)."""
    if cfg.samples == "auto":
        raise AchillesError("samples=auto runs through locate() (it looks at the stage-2 result); give a number here")
    return perturbation_ranking(
        model,
        input_ids,
        modules,
        cfg.ranking_size,
        cfg.granularity,
        alpha=cfg.alpha,
        samples=cfg.samples,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        max_memory=cfg.max_memory,
        progress=cfg.progress,
    )


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


@ranker("random")
def random_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Random neurons (the paper's random baseline, one trial per seed: use seeds seed, seed+1, ... for
    the 10-trial average). The probe text is not used; ``granularity`` is always channel."""
    return rank_scores(random_scores(model, modules, cfg.seed), cfg.ranking_size, "channel")


def _record_outputs(model, modules, run) -> dict[str, torch.Tensor]:
    """Call ``run()`` and keep each module's first 3-D tensor output."""
    with Recorder(model, modules, ndim=3) as rec:
        run()
    return rec.outputs


@torch.no_grad()
def activation_scores(model, input_ids, modules) -> dict[str, torch.Tensor]:
    """|activation| per (position, channel) of each module's output on one clean forward, [T, C] float32."""
    device = input_device(model)
    acts = _record_outputs(model, modules, lambda: forward(model, True, input_ids=input_ids.to(device)))
    return {n: acts[n][0].float().abs() for n in modules if n in acts}


@ranker("activation")
def activation_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Activation magnitude (AM): ranked by |activation| (the authors' script ranks the signed value,
    see docs/method.md; magnitude is what the paper's text describes)."""
    return rank_scores(activation_scores(model, input_ids, modules), cfg.ranking_size, cfg.granularity)


@torch.no_grad()
def signed_activation_scores(model, input_ids, modules) -> dict[str, torch.Tensor]:
    """Signed activation per (position, channel); ranking it keeps only positive values (the authors'
    AM script sorts the signed value, so large negative activations rank last)."""
    device = input_device(model)
    acts = _record_outputs(model, modules, lambda: forward(model, True, input_ids=input_ids.to(device)))
    return {n: acts[n][0].float() for n in modules if n in acts}


@ranker("activation_signed")
def activation_signed_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """AM as the authors' code does it (signed value, descending): a reference-compatible variant."""
    return rank_scores(signed_activation_scores(model, input_ids, modules), cfg.ranking_size, cfg.granularity)


def output_gradients(model, input_ids, modules) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per module: its output activation and d loss / d output, each [T, C] float32, from one forward and
    one backward pass.

    loss = mean next-token NLL of the text (d PPL = PPL * d loss, so the ranking by perplexity gradient
    is the same). Every hooked output gets a zero tensor *added* (``out + z``, z a leaf requiring grad)
    instead of being replaced by a detached copy: the forward values are unchanged, the graph stays
    connected, and d loss / d z is exactly the total derivative of the loss with respect to that
    module's output through all downstream paths. The authors' script detaches every hooked output,
    so only o_proj/down_proj get a gradient and all layers get the same one (docs/method.md, "Rankers").
    ``torch.autograd.grad`` asks only for the z's, so no parameter ``.grad`` is touched."""
    ids = input_ids.to(input_device(model))
    probes: dict[str, torch.Tensor] = {}
    acts: dict[str, torch.Tensor] = {}

    def make(name):
        def hook(_m, _i, output):
            t = first_tensor(output)
            if not isinstance(t, torch.Tensor) or t.dim() != 3 or not t.is_floating_point():
                return None
            z = torch.zeros_like(t, requires_grad=True)
            probes[name] = z
            acts[name] = t[0].detach()
            return replace_first(output, t + z)

        return hook

    with hooked(model, {name: make(name) for name in modules}), torch.enable_grad():
        logits = forward(model, input_ids=ids).logits[:, :-1]
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        loss = -logp.gather(-1, ids[:, 1:, None].to(logp.device)).mean()
        names = [n for n in modules if n in probes]
        grads = torch.autograd.grad(loss, [probes[n] for n in names], allow_unused=True)
    out = {}
    for n, g in zip(names, grads):
        a = acts[n].float().cpu()
        out[n] = (a, torch.zeros_like(a) if g is None else g[0].detach().float().cpu())
    return out


def gradient_scores(model, input_ids, modules) -> dict[str, torch.Tensor]:
    """|d loss / d output| per (position, channel) of every module, [T, C] float32 (:func:`output_gradients`)."""
    return {n: g.abs() for n, (_a, g) in output_gradients(model, input_ids, modules).items()}


def attribution_scores(model, input_ids, modules, granularity: str = "channel") -> dict[str, torch.Tensor]:
    """Attribution patching: the first-order estimate of how much zeroing a channel changes the probe's
    loss, from one forward and one backward pass. Zeroing output a moves the loss by about
    -a · dL/da, so a channel's score is |Σ_t a_t · dL/da_t| over the positions it is zeroed at (channel
    granularity, [C]), or |a_t · dL/da_t| per position ([T, C])."""
    out = {}
    for n, (a, g) in output_gradients(model, input_ids, modules).items():
        contrib = a * g
        out[n] = contrib.sum(dim=0).abs() if granularity == "channel" else contrib.abs()
    return out


@ranker("gradient")
def gradient_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Gradient magnitude (GM): |d loss / d activation| on the probe text, every module its own gradient."""
    return rank_scores(gradient_scores(model, input_ids, modules), cfg.ranking_size, cfg.granularity)


@ranker("attribution")
def attribution_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Attribution patching (beyond the paper): |Σ activation · gradient| on the probe, the linear
    estimate of each channel's zero-ablation effect on the loss (:func:`attribution_scores`). One forward
    and one backward pass; memory: the model's activations for the backward pass, plus one [T, C]
    activation and gradient per candidate module."""
    return rank_scores(
        attribution_scores(model, input_ids, modules, cfg.granularity), cfg.ranking_size, cfg.granularity
    )


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
    device = input_device(model)
    total = sum(len(v) for v in prompts.values())
    out: dict[str, dict[str, torch.Tensor]] = {}
    with tqdm(total=total, desc="keystone: prompts", disable=not progress, unit="prompt") as bar:
        for kind, ids_list in prompts.items():
            acc: dict[str, torch.Tensor] = {}
            for ids in ids_list:
                acts = _record_outputs(model, modules, lambda ids=ids: forward(model, True, input_ids=ids.to(device)))
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


@ranker("keystone_prompt")
def keystone_prompt_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """The project's first reading of "Tiny Brains, Giant Impact" (from its abstract alone; ``keystone``
    follows the fuller description): neurons *consistently highly activated across prompts of several
    capability types*, read at the prompts' own positions, ranked by cross-task activation strength
    (:func:`keystone_scores`).
    Prompts: ``cfg.prompts`` (type -> texts) or :data:`KEYSTONE_PROMPTS`; the probe text is added as
    one more type ("probe"). Channel granularity only (positions differ between prompts)."""
    if tokenizer is None:
        raise AchillesError("the keystone ranker needs a tokenizer to encode its prompts")
    texts = cfg.prompts or KEYSTONE_PROMPTS
    prompts = {k: [tokenizer(t, return_tensors="pt").input_ids for t in v] for k, v in texts.items() if v}
    prompts["probe"] = [input_ids]
    return rank_scores(
        keystone_scores(keystone_strengths(model, prompts, modules, cfg.progress)), cfg.ranking_size, "channel"
    )


#: The keystone selection's prompts: one per capability dimension the paper names (general, math, code,
#: multilingual), written for this project. ``LocatorConfig.prompts`` replaces them.
KEYSTONE_SELECTION_PROMPTS: dict[str, list[str]] = {
    "general": ["Explain in a few sentences why the sky looks blue during the day and red at sunset."],
    "math": ["A shop sells pencils at 3 for 45 cents. How much do 12 pencils cost? Think step by step."],
    "code": ["Write a Python function that returns the n-th Fibonacci number, with a short docstring."],
    "multilingual": ["Traduis en anglais : « La bibliothèque municipale ferme à dix-huit heures le samedi. »"],
}


@torch.no_grad()
def generated_strengths(model, tokenizer, prompts, modules, tokens: int, progress: bool = False):
    """Per capability type and module: the mean |activation| of every channel over the tokens the model
    **generates** for the type's prompts (greedy, ``tokens`` new tokens, the tokenizer's chat template when
    it has one; the prompt's own positions are not counted), averaged over the type's prompts. Returns ``(strengths, generations)``."""
    device = input_device(model)
    total = sum(len(v) for v in prompts.values())
    out: dict[str, dict[str, torch.Tensor]] = {}
    generations: dict[str, list[str]] = {}
    with tqdm(total=total, desc="keystone: generating", disable=not progress, unit="prompt") as bar:
        for kind, texts in prompts.items():
            acc: dict[str, torch.Tensor] = {}
            generations[kind] = []
            for text in texts:
                ids = _prompt_ids(tokenizer, text).to(device)
                full = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id
                    if tokenizer.pad_token_id is not None
                    else tokenizer.eos_token_id,
                )
                start = ids.shape[1]
                if full.shape[1] <= start:
                    raise AchillesError(f"keystone: the model generated nothing for the {kind} prompt")
                generations[kind].append(tokenizer.decode(full[0, start:], skip_special_tokens=True))
                acts = _record_outputs(model, modules, lambda full=full: forward(model, True, input_ids=full))
                for n, a in acts.items():
                    s = a[0, start:].float().abs().mean(dim=0).cpu()
                    acc[n] = acc[n] + s if n in acc else s
                bar.update(1)
            out[kind] = {n: v / len(texts) for n, v in acc.items()}
    return out, generations


def _prompt_ids(tokenizer, text: str) -> torch.Tensor:
    """The prompt as the model is asked it: through its chat template when the tokenizer has one (an
    instruct model answers the question), else the plain text."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt"
        )
        return ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    return tokenizer(text, return_tensors="pt").input_ids


def keystone_selection(strengths: dict[str, dict[str, torch.Tensor]], fraction: float) -> dict[str, torch.Tensor]:
    """The keystone candidates: within each module block, the top ``fraction`` of its channels for
    *every* prompt type (intersection of the per-type top sets), scored by their cross-task activation
    (mean over types); every other channel scores 0, so the ranking holds the candidates only."""
    kinds = list(strengths)
    modules = [m for m in strengths[kinds[0]] if all(m in strengths[k] for k in kinds)]
    out = {}
    for m in modules:
        stack = torch.stack([strengths[k][m] for k in kinds])  # [types, C]
        keep = max(1, math.ceil(fraction * stack.shape[1]))
        top = torch.zeros_like(stack, dtype=torch.bool)
        top.scatter_(1, stack.topk(keep, dim=1).indices, True)
        survivors = top.all(dim=0)
        out[m] = torch.where(survivors, stack.mean(dim=0), torch.zeros_like(stack[0]))
    return out


@ranker("keystone")
def keystone_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Keystone neurons, selected as the fuller description of "Tiny Brains, Giant Impact" reads (a public
    summary of the paper, not its code; docs/method.md, "Rankers"): a few prompts from different
    capability dimensions; per neuron, its mean |activation| over the tokens the model generates for each
    prompt (``cfg.keystone_tokens``); within each module block the top ``cfg.keystone_fraction`` per
    prompt; the intersection over prompts, ranked by cross-task activation. Stage 2 then takes the
    shortest prefix that collapses the model: the keystone set. The probe text is not used."""
    if tokenizer is None:
        raise AchillesError("the keystone ranker needs a tokenizer to encode its prompts")
    texts = cfg.prompts or KEYSTONE_SELECTION_PROMPTS
    strengths, _ = generated_strengths(model, tokenizer, texts, modules, cfg.keystone_tokens, cfg.progress)
    ranked = rank_scores(keystone_selection(strengths, cfg.keystone_fraction), cfg.ranking_size, "channel")
    if not ranked:
        raise AchillesError(
            f"keystone: no channel is in the top {cfg.keystone_fraction:.1%} of its module for every prompt type; "
            "raise keystone_fraction or use fewer prompt types"
        )
    return ranked


def high_norm_scores(model, modules) -> dict[str, torch.Tensor]:
    """The norm of the weights that produce each output channel: a Linear's row (plus its bias), a norm
    layer's gain; modules without a weight score 0."""
    named = dict(model.named_modules())
    out = {}
    for m in modules:
        w = getattr(named[m], "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        w = w.detach().float()
        score = w.norm(dim=1) if w.dim() == 2 else w.abs()
        b = getattr(named[m], "bias", None)
        if isinstance(b, torch.Tensor) and b.shape == score.shape:
            score = (score**2 + b.detach().float() ** 2).sqrt()
        out[m] = score.cpu()
    return out


@ranker("high_norm")
def high_norm_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Baseline for the keystone set: the channels whose producing weights have the largest norm."""
    return rank_scores(high_norm_scores(model, modules), cfg.ranking_size, "channel")


@ranker("same_layer_random")
def same_layer_random_ranker(model, tokenizer, input_ids, modules, cfg: LocatorConfig) -> list[RankedNeuron]:
    """Baseline for the keystone set: random channels of the modules the keystone candidates sit in
    (the same layers and module kinds), in a seeded random order."""
    keystone = keystone_ranker(model, tokenizer, input_ids, modules, cfg)
    where = list(dict.fromkeys(r.module for r in keystone))
    return rank_scores(random_scores(model, where, cfg.seed), cfg.ranking_size, "channel")
