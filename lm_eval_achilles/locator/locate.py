"""``locate``: the paper's two stages end to end, returning a :class:`~lm_eval_achilles.mask.mask_file.MaskFile`.

from lm_eval_achilles.models.loading import load_model
from lm_eval_achilles.locator.locate import locate
mask = locate(load_model())          # embedded model, paper defaults
print(mask.critical.size, mask.critical.delta)
"""

from __future__ import annotations

from lm_eval_achilles.defaults import EPSILON, MAX_PPL_TOKENS, MAX_STEPS, PROBE_TEXT, STEP
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import dtype_name
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.perplexity import encode
from lm_eval_achilles.locator.rankers import RankerConfig, get_ranker
from lm_eval_achilles.locator.search import SearchResult, greedy_search
from lm_eval_achilles.mask.mask_file import Critical, MaskFile, Minimal, ModelInfo
from lm_eval_achilles.models.loading import LoadedModel, fingerprint, weights_digest
from lm_eval_achilles.validate import as_float, as_int, as_text


def locate(
    loaded: LoadedModel,
    text: str = PROBE_TEXT,
    method: str = "perturbation",
    test_text: str | None = None,
    config: RankerConfig | None = None,
    epsilon: float = EPSILON,
    step: int = STEP,
    max_steps: int = MAX_STEPS,
    modules: str | None = None,
    scale: float = 0.0,
    search_batch_size: int = 8,
    dtype: str = "auto",
    minimize: bool = False,
    max_evals: int | None = None,
) -> MaskFile:
    """Rank neurons with ``method`` on ``text`` (stage 1), then find the critical set on ``test_text``
    (stage 2; defaults to ``text``, as in the paper). ``minimize`` then searches a smaller verified-minimal
    set (:mod:`~lm_eval_achilles.locator.minimize`, at most ``max_evals`` candidate sets) stored as
    ``minimal`` beside the paper's ``critical`` set."""
    cfg = config or RankerConfig()
    check_arguments(text, method, test_text, epsilon, step, max_steps, scale)
    if max_evals is not None:
        as_int(max_evals, "max_evals", minimum=1)
    auto = cfg.samples == "auto"
    if auto and method != "perturbation":
        raise AchillesError(f"samples=auto applies to the perturbation method only, not {method!r}")
    model, tok = loaded.model, loaded.tokenizer
    names = candidate_modules(model, modules)
    probe_ids = encode(tok, text, max_tokens=None, what="probe text")
    test_ids = probe_ids if test_text is None else encode(tok, test_text, MAX_PPL_TOKENS, what="test text")
    test_ids = test_ids[:, :MAX_PPL_TOKENS]

    def search(ranking):
        if not ranking:
            raise AchillesError("the ranking is empty: no neuron changed under the perturbation")
        return greedy_search(
            model,
            test_ids,
            [r.neuron for r in ranking],
            epsilon=epsilon,
            step=step,
            max_steps=max_steps,
            scale=scale,
            batch_size=search_batch_size,
            progress=cfg.progress,
        )

    if auto:
        ranking, result, auto_info = adaptive_locate(model, probe_ids, names, cfg, search)
    else:
        ranking = get_ranker(method)(model, tok, probe_ids, names, cfg)
        result = search(ranking)
        auto_info = {"samples_used": cfg.samples} if method == "perturbation" else {}
    minimal = None
    if minimize and result.size > 0:
        minimal = minimal_set(
            model,
            test_ids,
            result,
            [r.neuron for r in ranking],
            epsilon=epsilon,
            scale=scale,
            batch_size=search_batch_size,
            max_evals=max_evals,
            progress=cfg.progress,
            curve=step == 1 and cfg.granularity == "channel",
        )
    mask = to_mask_file(
        loaded,
        ranking,
        result,
        {
            "method": method,
            "text": text,
            "test_text": test_text,
            "alpha": cfg.alpha,
            "samples": cfg.samples,
            "seed": cfg.seed,
            "epsilon": epsilon,
            "step": step,
            "granularity": cfg.granularity,
            "dtype": dtype if dtype != "auto" else dtype_name(next(model.parameters()).dtype),
            "modules": modules,
            "scale": scale,
            "max_steps": max_steps,
            "probe_tokens": int(probe_ids.shape[1]),
            **auto_info,
            **({"minimize": True, "max_evals": max_evals} if minimize else {}),
        },
    )
    mask.minimal = minimal
    return mask


def adaptive_locate(model, probe_ids, names, cfg: RankerConfig, search):
    """``--samples auto`` (docs/method.md, "Adaptive K"): stage 1 in looks of a few samples until the ordered
    top-R of the ranking is unchanged over two successive looks, R = max(AUTO_TOP, AUTO_MARGIN x the
    critical prefix); stage 2 on that ranking. If the prefix turns out longer than R covers, more samples
    are added until the larger top is stable too (the looks already made count), and stage 2 runs again.
    The cap is AUTO_CAP samples; the draws are those of a fixed-K run with the same seed and batch size,
    so at the cap the result is the fixed K = AUTO_CAP result. Returns the ranking, the search result and
    the locator fields to record (``samples_used`` ...)."""
    from tqdm.auto import tqdm

    from lm_eval_achilles.locator import perturbation as p
    from lm_eval_achilles.locator.rankers import rank_scores

    state = p.Perturbation(model, probe_ids, names, cfg.alpha, cfg.seed, cfg.batch_size, cap=p.AUTO_CAP)
    history: list = []
    top, stage2_runs = p.AUTO_TOP, 0
    with tqdm(total=p.AUTO_CAP, desc="stage 1: noisy samples (auto)", disable=not cfg.progress, unit="sample") as bar:
        while True:
            stable = state.add_until_stable(history, top, cfg.granularity, bar)
            ranking = rank_scores(state.scores(), cfg.k, cfg.granularity)
            result = search(ranking)
            stage2_runs += 1
            need = max(p.AUTO_TOP, p.AUTO_MARGIN * result.size) if result.size else p.AUTO_KEEP + 1
            if state.samples >= state.cap or need <= top:
                break
            top = need  # the prefix is longer than the stable top covers (or none was found): look further
    return (
        ranking,
        result,
        {
            "samples_used": state.samples,
            "samples_auto": {
                "stable_top": top,
                "stable": stable,
                "check_every": p.AUTO_CHECK,
                "min_samples": p.AUTO_MIN,
                "margin": p.AUTO_MARGIN,
                "cap": p.AUTO_CAP,
                "stage2_runs": stage2_runs,
            },
        },
    )


def minimal_set(
    model, test_ids, result: SearchResult, ranking, epsilon, scale, batch_size, max_evals, progress, curve
) -> Minimal:
    """Run :func:`~lm_eval_achilles.locator.minimize.minimize` from the critical prefix of ``result``;
    with ``curve`` (step 1, channel granularity) the stage-2 curve orders its first step and seeds its memo."""
    from lm_eval_achilles.locator.minimize import minimize

    nlls = [nll for _, nll in result.curve] if curve else None
    if nlls is not None and [n for n, _ in result.curve] != list(range(len(result.curve))):
        nlls = None
    res = minimize(
        model,
        test_ids,
        result.neurons,
        ranking,
        epsilon,
        curve_nlls=nlls,
        baseline=result.baseline_nll,
        scale=scale,
        batch_size=batch_size,
        max_evals=max_evals,
        progress=progress,
    )
    return Minimal(
        neurons=res.neurons,
        delta=res.delta,
        baseline_ppl=res.baseline_ppl,
        masked_ppl=res.masked_ppl,
        method=res.method,
        forward_passes=res.forward_passes,
        sets_evaluated=res.sets_evaluated,
        verified_minimal=res.verified_minimal,
        stopping_reason=res.stopping_reason,
        seconds=res.seconds,
        start_size=res.start_size,
    )


def check_arguments(
    text: str = PROBE_TEXT,
    method: str = "perturbation",
    test_text: str | None = None,
    epsilon: float = EPSILON,
    step: int = STEP,
    max_steps: int = MAX_STEPS,
    scale: float = 0.0,
) -> None:
    """Everything :func:`locate` can check without the model (the ranker's settings are checked by
    :class:`RankerConfig`). ``achilles locate`` calls it before loading the model; ``locate`` calls it
    again, so the Python API gets the same one-line errors."""
    as_text(text, "probe text")
    if test_text is not None:
        as_text(test_text, "test text")
    get_ranker(method)
    as_float(epsilon, "epsilon", positive=True)  # nan would never be crossed: all max_steps would run
    as_int(step, "step", minimum=1)
    as_int(max_steps, "max_steps", minimum=1)
    as_float(scale, "scale")


def to_mask_file(loaded: LoadedModel, ranking, result: SearchResult, locator: dict) -> MaskFile:
    return MaskFile(
        model=ModelInfo(
            name_or_path=loaded.name_or_path,
            architecture=type(loaded.model).__name__,
            fingerprint=fingerprint(loaded.model),
            weights_digest=weights_digest(loaded.model),
        ),
        locator=locator,
        ranking=list(ranking),
        critical=Critical(
            size=result.size,
            baseline_ppl=result.baseline_ppl,
            masked_ppl=result.masked_ppl,
            delta=result.delta,
            curve=result.curve_ppl(),
            stopping_reason=result.stopping_reason,
        ),
        neurons=result.neurons,
    )
