"""``achilles paths``: where the installed package keeps its lm-eval task folder, its sample documents and
its cache, for commands that need a path (``lm_eval --include_path "$(achilles paths --tasks)"``)."""

from __future__ import annotations

HELP = "print where the installed task folder, sample documents and cache are (for lm_eval --include_path ...)"


def add_arguments(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tasks", action="store_true", help="print only the lm-eval task folder (for --include_path)")
    g.add_argument("--sample-data", action="store_true", help="print only the sample documents' folder (a data_dir)")
    g.add_argument("--cache", action="store_true", help="print only the cache folder (models, located masks)")


def run(args) -> int:
    from lm_eval_achilles import __version__
    from lm_eval_achilles.models.named import cache_dir
    from lm_eval_achilles.resources import sample_data_dir, task_configs_dir

    paths = {"tasks": task_configs_dir(), "sample_data": sample_data_dir(), "cache": cache_dir()}
    chosen = [k for k in paths if getattr(args, k)]
    if chosen:
        print(paths[chosen[0]])
        return 0
    print(f"lm_eval_achilles {__version__}")
    print(f"tasks        {paths['tasks']}   (lm_eval --include_path; achilles eval adds it itself)")
    print(f'sample_data  {paths["sample_data"]}   (--data-dir sample, or --metadata \'{{"data_dir": "sample"}}\')')
    print(f"cache        {paths['cache']}   ($ACHILLES_CACHE: named models, locate=true results)")
    return 0
