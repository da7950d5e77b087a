"""``achilles study NAME``: reproduce one of the paper's comparison/ablation studies (or ``all``)."""

from __future__ import annotations

from lm_eval_achilles.cli.common import (
    add_locator_arguments,
    add_model_arguments,
    add_overwrite_argument,
    check_modules_before_loading,
    load_from_args,
    locator_config,
    positive_int,
)

#: Ranked entries a study keeps (it needs at most the stage-2 cap, 1000 by default; the mask file's 10 000
#: would only cost time in the random and gradient baselines). ``--ranking-size`` overrides it.
STUDY_RANKING_SIZE = 1000

HELP = "run a comparison/ablation study of the paper (methods, components, sensitivity, probes, threshold, subsets, precision, scaling, all)"


def add_arguments(p):
    p.add_argument("name", help="study name, several separated by commas, or 'all'")
    add_model_arguments(p)
    p.add_argument("--out", required=True, help="output folder (one sub-folder per study)")
    p.add_argument(
        "--eval-file",
        default=None,
        help="evaluation texts: a .jsonl file with a 'text' field per line, or a text file with "
        "paragraphs separated by blank lines (default: built-in WikiText-style paragraphs)",
    )
    p.add_argument(
        "--trials",
        type=positive_int,
        default=10,
        help="random-masking trials (paper: 10 in Fig. 3, 100 in Tables 12-14)",
    )
    add_locator_arguments(p, minimize=False)
    p.add_argument("--quick", action="store_true", help="small sweeps (smoke test), not the paper's grids")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_overwrite_argument(p)


def _eval_texts(path):
    import json
    from pathlib import Path

    from lm_eval_achilles.errors import AchillesError

    p = Path(path)
    if not p.is_file():
        raise AchillesError(f"evaluation file not found: {p}")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AchillesError(f"evaluation file {p} is not UTF-8 text ({exc.reason})") from None
    if p.suffix == ".jsonl":
        try:
            texts = [json.loads(line)["text"] for line in raw.splitlines() if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AchillesError(f"{p}: every line must be a JSON object with a 'text' field ({exc})") from exc
    else:
        texts = [t.strip() for t in raw.split("\n\n")]
    texts = [t for t in texts if len(t.strip()) > 50]
    if not texts:
        raise AchillesError(f"{p}: no evaluation text longer than 50 characters")
    return texts


def run(args) -> int:
    import shlex
    import sys
    import time
    from pathlib import Path

    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.paper.studies import STUDIES, get_study, run_study, write_index
    from lm_eval_achilles.paper.studies.common import StudyContext
    from lm_eval_achilles.validate import check_output

    names = STUDIES if args.name == "all" else [n.strip() for n in args.name.split(",") if n.strip()]
    if not names:
        raise AchillesError(f"no study named in {args.name!r}; choose one of {', '.join(STUDIES)} or all")
    for n in names:
        get_study(n)  # unknown name -> one-line error before loading the model
    # everything else that can be wrong is checked before the model is loaded, too
    cfg = locator_config(args, ranking_size=STUDY_RANKING_SIZE)
    eval_texts = _eval_texts(args.eval_file) if args.eval_file else None
    check_output(args.out, results=[f"{n}/{n}.json" for n in names], overwrite=args.overwrite)
    check_modules_before_loading(args, cfg.modules)
    loaded = load_from_args(args)
    ctx = StudyContext(
        loaded=loaded,
        out=Path(args.out),
        command="achilles " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        config=cfg,
        trials=args.trials,
        quick=args.quick,
    )
    if eval_texts is not None:
        ctx.eval_texts = eval_texts
    seconds = {}
    for n in names:
        start = time.perf_counter()
        folder = run_study(n, ctx)
        seconds[n] = time.perf_counter() - start
        print(f"study {n}: wrote {folder}/README.md ({seconds[n]:.0f} s)", flush=True)
    if len(names) > 1:
        print(f"index: {write_index(ctx, names, seconds)}")
    return 0
