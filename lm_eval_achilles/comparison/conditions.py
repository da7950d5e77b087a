"""Running both conditions: the unmasked original (``top_n=0``) and the masked model, through the lm-eval
model ``achilles_masked`` with identical settings (tasks, limit, seeds, batch size, generation settings),
each into its own output folder and its own ``--use_cache`` file, with ``--log_samples`` on. The folders
look exactly like ``lm_eval --output_path DIR --log_samples`` ones."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.resources import task_configs_dir


@dataclass
class RunSettings:
    """Everything both conditions share (so they are evaluated identically)."""

    tasks: list[str]
    limit: int | float | None = None
    batch_size: int | str = 1
    gen_kwargs: str | None = None
    seed: int = 1234
    device: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    include_path: list[str] = field(default_factory=list)
    use_cache: bool = True
    num_fewshot: int | None = None
    confirm_run_unsafe_code: bool = False
    apply_chat_template: bool | str = False  # True = the tokenizer's default chat template, or a template name
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None


def model_args_for(
    base: dict[str, Any], mask_path: str | Path | None, masked: bool, top_n: int | None = None
) -> dict[str, Any]:
    """``achilles_masked`` arguments of one condition: the original is ``top_n=0`` (unmasked)."""
    args = {k: v for k, v in base.items() if v is not None}
    if mask_path is not None:
        args["mask"] = str(mask_path)
    if not masked:
        args["top_n"] = 0
    elif top_n is not None:
        args["top_n"] = int(top_n)
    return args


def make_task_manager(settings: RunSettings, model_args: dict[str, Any] | None = None):
    """A TaskManager over this package's tasks (+ ``include_path``). lm-eval's ~14 000 built-in task files
    are indexed only when a requested task is not found among ours (indexing them takes 20-40 s on a CPU).

    As ``simple_evaluate`` does when it builds the TaskManager itself, the model arguments are merged
    into the task metadata (the perplexity tasks read ``pretrained`` from there for their tokenizer)."""
    from lm_eval.tasks import TaskManager

    metadata = {k: v for k, v in (model_args or {}).items() if v is not None} | dict(settings.metadata or {})
    include = [str(p) for p in settings.include_path]
    own = task_configs_dir()
    if str(own) not in include:
        include.append(str(own))
    if include:
        tm = TaskManager(include_path=include, include_defaults=False, metadata=metadata or None)
        if all(t in tm.all_tasks for t in settings.tasks):
            return tm
    return TaskManager(include_path=include or None, metadata=metadata or None)


def checked_task_manager(settings: RunSettings, model_args: dict[str, Any] | None = None):
    """:func:`make_task_manager`, refusing an empty task list or a task lm-eval does not know before
    any model is loaded (lm-eval itself finds out only after loading the model)."""
    if not settings.tasks:
        raise AchillesError("no lm-eval task given")
    tm = make_task_manager(settings, model_args)
    unknown = [t for t in settings.tasks if t not in tm.all_tasks]
    if unknown:
        raise AchillesError(f"unknown lm-eval task(s) {', '.join(unknown)} (see: lm-eval ls tasks)")
    return tm


def run_condition(
    model: str,
    model_args: dict[str, Any],
    settings: RunSettings,
    out_dir: str | Path,
    cache_path: str | Path | None,
    task_manager=None,
) -> Path:
    """One ``lm_eval`` run (in process) with ``--log_samples``, saved exactly like the lm_eval CLI saves it."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    if model == "achilles_masked":
        from lm_eval_achilles.harness import lm_model  # noqa: F401  (registers achilles_masked)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task_manager = task_manager or make_task_manager(settings, model_args)
    tracker = EvaluationTracker(output_path=str(out_dir))
    if cache_path is not None:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    with _quiet_git():
        results = _evaluate(lm_eval, model, model_args, settings, cache_path, tracker, task_manager)
    if results is None:
        raise AchillesError("lm-eval returned no results")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return out_dir


def _evaluate(lm_eval, model, model_args, settings: RunSettings, cache_path, tracker, task_manager):
    return lm_eval.simple_evaluate(
        model=model,
        model_args=dict(model_args),
        tasks=list(settings.tasks),
        num_fewshot=settings.num_fewshot,
        batch_size=settings.batch_size,
        device=settings.device,
        limit=settings.limit,
        use_cache=str(cache_path) if cache_path is not None else None,
        log_samples=True,
        evaluation_tracker=tracker,
        gen_kwargs=settings.gen_kwargs,
        task_manager=task_manager,
        random_seed=settings.seed,
        numpy_random_seed=settings.seed,
        torch_random_seed=settings.seed,
        fewshot_random_seed=settings.seed,
        confirm_run_unsafe_code=settings.confirm_run_unsafe_code,
        metadata=settings.metadata or None,
        apply_chat_template=settings.apply_chat_template,
        fewshot_as_multiturn=settings.fewshot_as_multiturn,
        system_instruction=settings.system_instruction,
    )


@contextmanager
def _quiet_git():
    """lm-eval records the git commit of the current directory (``git describe``); outside a repository git
    prints "fatal: not a git repository" on the console. Within a run started here, git is asked quietly."""
    import subprocess

    import lm_eval.evaluator as ev

    def quiet_hash():
        try:
            out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=True)
            return out.stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None

    saved, ev.get_git_commit_hash = ev.get_git_commit_hash, quiet_hash
    try:
        yield
    finally:
        ev.get_git_commit_hash = saved


#: The folders of one comparison run inside its output folder (``cache`` holds the response caches).
RESULT_FOLDERS = ("original", "masked", "cache")


def run_conditions(
    base_model_args: dict[str, Any],
    mask_path: str | Path,
    settings: RunSettings,
    out_dir: str | Path,
    model: str = "achilles_masked",
    top_n: int | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Evaluate the original and the masked model into ``out_dir/original`` and ``out_dir/masked``, each
    with its own cache file under ``out_dir/cache``. Returns the two folders.

    Results of an earlier run in ``out_dir`` are refused before anything runs, or removed first with
    ``overwrite`` (the response caches too: they are keyed by request alone, so answers of an earlier
    model would be served to this one)."""
    import shutil

    out = Path(out_dir)
    earlier = [out / name for name in RESULT_FOLDERS if (out / name).exists()]
    if earlier and not overwrite:
        raise AchillesError(
            f"{out} already holds results of an earlier run ({', '.join(p.name for p in earlier)}); "
            "choose a fresh output folder, remove them, or pass --overwrite (overwrite=True) to replace them"
        )
    tm = checked_task_manager(settings, model_args_for(base_model_args, mask_path, False, top_n))
    for folder in earlier:
        shutil.rmtree(folder)
    folders = []
    for name, is_masked in (("original", False), ("masked", True)):
        cache = out / "cache" / name if settings.use_cache else None
        args = model_args_for(base_model_args, mask_path, is_masked, top_n)
        folders.append(run_condition(model, args, settings, out / name, cache, task_manager=None if is_masked else tm))
    return folders[0], folders[1]
