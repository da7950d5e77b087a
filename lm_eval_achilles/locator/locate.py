"""``locate``: the paper's two stages end to end, returning a :class:`~lm_eval_achilles.mask.mask_file.MaskFile`.

from lm_eval_achilles.models.loading import load_model
from lm_eval_achilles.locator.locate import locate
mask = locate(load_model())          # embedded model, paper defaults
print(mask.critical.size, mask.critical.delta)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from tqdm.auto import tqdm

from lm_eval_achilles.defaults import MAX_PPL_TOKENS, MAX_PROBE_TOKENS
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import dtype_name, human_bytes
from lm_eval_achilles.locator import perturbation as p
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.minimize import minimize as minimize_set
from lm_eval_achilles.locator.perplexity import encode, evaluate_sets
from lm_eval_achilles.locator.rankers import get_ranker
from lm_eval_achilles.locator.search import SearchResult, search_ranking
from lm_eval_achilles.mask.mask_file import Critical, MaskFile, Minimal, ModelInfo, RankedNeuron
from lm_eval_achilles.models.loading import LoadedModel, fingerprint, weights_digest


def locate(loaded: LoadedModel, config: LocatorConfig | None = None, **settings) -> MaskFile:
    """Rank neurons with ``config.method`` on ``config.text`` (stage 1), then find the critical set on
    ``config.test_text`` (stage 2; defaults to the probe text, as in the paper). With ``minimize`` a
    smaller verified-minimal set is searched next (:mod:`~lm_eval_achilles.locator.minimize`) and stored
    as ``minimal`` beside the paper's ``critical`` set.

    ``settings`` are :class:`LocatorConfig` fields replacing those of ``config`` (the paper's defaults
    when None): ``locate(loaded, samples="auto", minimize=True)``."""
    cfg = LocatorConfig.build(config, **settings)
    model, tok = loaded.model, loaded.tokenizer
    names = candidate_modules(model, cfg.modules)
    probe_ids = encode(tok, cfg.text, max_tokens=MAX_PROBE_TOKENS, what="probe text")
    test_ids = probe_ids if cfg.test_text is None else encode(tok, cfg.test_text, MAX_PPL_TOKENS, what="test text")
    located = rank_and_search(model, tok, probe_ids, test_ids[:, :MAX_PPL_TOKENS], names, cfg)
    result = located.result
    minimal = None
    if cfg.minimize and result.size > 0:
        minimal = minimal_set(model, test_ids[:, :MAX_PPL_TOKENS], result, located.ranking, cfg, located.memo)
    locator = {
        **cfg.to_record(),
        "dtype": dtype_name(next(model.parameters()).dtype),
        "probe_tokens": int(probe_ids.shape[1]),
        **located.info,
    }
    return MaskFile(
        model=model_info(loaded),
        locator=locator,
        ranking=list(located.ranking),
        critical=from_result(Critical, result, curve=result.curve_ppl()),
        neurons=result.neurons,
        minimal=minimal,
    )


@dataclass
class Located:
    """Stage 1 and stage 2 of one run: the ranking, the search result, and what the run spent
    (``samples_used`` ..., recorded in the mask file's ``locator`` block)."""

    ranking: list[RankedNeuron]
    result: SearchResult
    info: dict[str, Any] = field(default_factory=dict)
    #: every masked set stage 2 evaluated on the test text (frozenset of neurons -> mean NLL)
    memo: dict = field(default_factory=dict, repr=False)


def rank_and_search(model, tokenizer, probe_ids, test_ids, names, cfg: LocatorConfig) -> Located:
    """The locator's two stages on encoded texts: ``locate()`` and the studies both run through here."""
    if cfg.samples == "auto":
        return adaptive_locate(model, probe_ids, test_ids, names, cfg)
    ranking = get_ranker(cfg.method)(model, tokenizer, probe_ids, names, cfg)
    info = {"samples_used": cfg.samples} if cfg.method == "perturbation" else {}
    memo: dict = {}
    return Located(ranking, search_ranking(model, test_ids, ranking, cfg, memo), info, memo)


def from_result(cls, result, **values):
    """A file record (``Critical``, ``Minimal``) from a result object with the same field names: the
    one place results become records, so a field added to both is carried without a copy line."""
    return cls(**{f.name: values[f.name] if f.name in values else getattr(result, f.name) for f in fields(cls)})


def model_info(loaded: LoadedModel) -> ModelInfo:
    return ModelInfo(
        name_or_path=loaded.name_or_path,
        architecture=type(loaded.model).__name__,
        fingerprint=fingerprint(loaded.model),
        weights_digest=weights_digest(loaded.model),
    )


def adaptive_locate(model, probe_ids, test_ids, names, cfg: LocatorConfig) -> Located:
    """``--samples auto`` (docs/method.md, "Adaptive K"): stage 1 in looks of AUTO_CHECK samples; at each
    look stage 2 runs on the running ranking (galloping, sharing one memo of evaluated sets, and not
    walking on when no measured prefix crosses: a look is a few batched forwards; once a set is kept, a
    look only measures the kept size and the prefix one shorter, often known to the memo already). Each
    set a look finds is a valid critical set; the smallest is kept, and stage 1 stops once a look with at
    least AUTO_MIN samples finds none smaller (:func:`~lm_eval_achilles.locator.perturbation.auto_decision`), or at the
    cap AUTO_CAP. The result is stage 2 with the run's own settings (search, patience) on the kept look's
    ranking; the memo makes it free where that look measured it. The draws are those of a fixed-K run with
    the same seed and batch size, so the kept ranking is the fixed-K ranking for its K. Returns the
    ranking, the search result and the locator fields to record (``samples_used``: the kept ranking's K,
    ``samples_auto`` with every look and ``samples_drawn``)."""
    mem, groups = p.plan(model, probe_ids, names, cfg.batch_size, cfg.max_memory, cfg.progress)
    if len(groups) > 1:
        raise AchillesError(
            f"samples=auto ranks all modules after every few samples, so stage 1 cannot run in groups: it "
            f"needs {human_bytes(mem.total())}, over max_memory {human_bytes(cfg.max_memory)}; "
            "give a fixed --samples (grouped), or raise --max-memory"
        )
    state = p.Perturbation(model, probe_ids, names, cfg.alpha, cfg.seed, cfg.batch_size, cap=p.AUTO_CAP)
    memo: dict = {}  # the looks share their evaluated sets (a later ranking's prefixes often repeat)
    # a look asks where one ranking crosses: one set per forward spends the fewest rows (each row costs a
    # full forward with logits over the vocabulary, several noisy samples' worth)
    look_cfg = replace(cfg, search="galloping", progress=False, search_batch_size=1)
    looks: list[list] = []  # [samples, critical set's distinct channels (0: none), Delta] per look, recorded
    stop, best, kept, kept_size = False, None, None, 0  # kept: the ranking of look ``best``, its prefix size
    look_forwards = 0
    desc = "stage 1: noisy samples (auto)"
    with tqdm(total=p.AUTO_CAP, desc=desc, disable=not cfg.progress, unit="sample") as bar:
        while True:
            state.add(p.AUTO_CHECK, bar)
            ranking = state.ranking(cfg.ranking_size, cfg.granularity)
            # after the first set, a look only asks whether this ranking crosses at or before the kept size
            bound = None if best is None else kept_size
            look = search_ranking(model, test_ids, ranking, look_cfg, memo, exhaustive=False, at_most=bound)
            found = len(look.neurons)  # distinct channels; none when nothing crossed
            look_forwards += look.forward_passes
            looks.append([state.samples, found, round(look.delta, 4) if found else None])
            stop, best = p.auto_decision([(k, n) for k, n, _ in looks])
            if best == len(looks) - 1:
                kept, kept_size = ranking, look.size
            bar.set_postfix_str(f"critical set {found or 'none'}" + (f", Delta {look.delta:.2f}" if found else ""))
            if stop or state.samples >= state.cap:
                break
    if kept is not None:
        ranking = kept
    result = search_ranking(model, test_ids, ranking, cfg, memo)
    return Located(
        ranking,
        result,
        {
            "samples_used": looks[-1 if best is None else best][0],
            "samples_auto": {
                "criterion": "smallest set",
                "stable": bool(stop),
                "samples_drawn": state.samples,
                "look_forwards": look_forwards,
                "check_every": p.AUTO_CHECK,
                "min_samples": p.AUTO_MIN,
                "cap": p.AUTO_CAP,
                "looks": looks,
            },
        },
        memo,
    )


def minimal_set(model, test_ids, result: SearchResult, ranking, cfg: LocatorConfig, memo=None) -> Minimal:
    """Run :func:`~lm_eval_achilles.locator.minimize.minimize` from the critical prefix of ``result``;
    at step 1 and channel granularity the stage-2 curve (every prefix 0..size) orders its first step and
    seeds its memo. The galloping search measures only some of those prefixes: the others are evaluated
    here (size / search_batch_size forwards, once; the memo knows the rest)."""
    nlls = None
    if cfg.step == 1 and cfg.granularity == "channel":
        measured = dict(result.curve)
        missing = [n for n in range(1, result.size + 1) if n not in measured]
        if missing:
            neurons = [r.neuron for r in ranking]
            sets = [neurons[:n] for n in missing]
            measured.update(
                zip(missing, evaluate_sets(model, test_ids, sets, cfg.scale, cfg.search_batch_size, memo=memo))
            )
        nlls = [measured[n] for n in range(result.size + 1)]
    res = minimize_set(
        model,
        test_ids,
        result.neurons,
        [r.neuron for r in ranking],
        cfg.epsilon,
        curve_nlls=nlls,
        baseline=result.baseline_nll,
        scale=cfg.scale,
        batch_size=cfg.search_batch_size,
        max_evals=cfg.max_evals,
        progress=cfg.progress,
        memo=memo,
    )
    return from_result(Minimal, res)
