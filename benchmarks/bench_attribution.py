"""``--method attribution`` against the paper's ``perturbation``, per model and probe text, in one process.

    python benchmarks/bench_attribution.py [--model M ...] [--probe default long] [--device cpu]

For each model and probe (``default``: the paper's 75-token probe; ``long``: the four WikiText-style
paragraphs of the studies, about 500 tokens, the same texts as ``bench_locate.py --fastest``) both
rankers run the whole ``locate()`` with ``minimize=True`` and otherwise the package's defaults, one after
the other. Printed as a Markdown table per model and probe: stage-1 time (the ranker alone, timed around
the ranker call), the whole locate's time (both stages and ``--minimize``), the critical set (the paper's
prefix) with its Delta, the minimal set, the first ranked channels, and the overlap of the two methods'
critical and minimal sets (shared channels and Jaccard index).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import torch


def shared(a, b) -> str:
    """The overlap of two sets of channels, as a table cell (the regression check's own measure)."""
    from lm_eval_achilles.comparison.baseline import overlap

    common, jaccard = overlap(a, b)
    return f"{common} shared, Jaccard {jaccard:.2f}" if a or b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="*", default=None, help="model(s); default: the embedded one")
    ap.add_argument("--probe", nargs="+", choices=["default", "long"], default=["default", "long"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-evals", type=int, default=None, help="--minimize's budget of sets (default: the package's)")
    args = ap.parse_args()

    from bench_locate import dtype_of, probe_texts  # the same texts and dtype label as --fastest

    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.models.loading import load_model
    from lm_eval_achilles.paper.studies.common import short

    locate_module = importlib.import_module("lm_eval_achilles.locator.locate")
    texts = probe_texts()
    ranker_seconds: list[float] = []
    original = locate_module.get_ranker

    def timed_ranker(method):  # the ranker call alone, for the stage-1 column
        fn = original(method)

        def run(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            ranker_seconds.append(time.perf_counter() - t)
            return out

        return run

    locate_module.get_ranker = timed_ranker
    budget = {} if args.max_evals is None else {"max_evals": args.max_evals}
    out = []
    for model_name in args.model or [None]:
        loaded = load_model(model_name, dtype=args.dtype, device=args.device)
        dtype = dtype_of(loaded)
        for probe in args.probe:
            masks, rows = {}, []
            load = [os.getloadavg()[0]]
            for method in ["perturbation", "attribution"]:
                t = time.perf_counter()
                masks[method] = locate(
                    loaded, LocatorConfig(method=method, text=texts[probe], minimize=True, progress=False, **budget)
                )
                whole = time.perf_counter() - t
                rows.append((method, ranker_seconds[-1], whole))
                load.append(os.getloadavg()[0])
            tokens = masks["perturbation"].locator["probe_tokens"]
            print(
                f"\n## {loaded.display_name}, {probe} probe ({tokens} tokens), {loaded.device}, {dtype}, "
                f"torch threads {torch.get_num_threads()}\n"
            )
            print(
                "| method | stage 1 (s) | whole locate incl. --minimize (s) | critical set | Delta | minimal set "
                "| first ranked channels |"
            )
            print("|---|--:|--:|--:|--:|--:|---|")
            for method, stage1, whole in rows:
                m = masks[method]
                minimal = "-" if m.minimal is None else len(m.minimal.neurons)
                if m.minimal is not None and not m.minimal.verified_minimal:
                    minimal = f"{minimal} (not verified: {m.minimal.stopping_reason})"
                first = ", ".join(short(r) for r in m.ranking[:5])
                print(
                    f"| `{method}` | {stage1:.1f} | {whole:.1f} | {len(m.neurons)} | {m.critical.delta:.3f} "
                    f"| {minimal} | {first} |"
                )
            p, a = masks["perturbation"], masks["attribution"]
            print(f"\ncritical sets: {shared(p.neurons, a.neurons)}")
            if p.minimal and a.minimal:
                print(f"minimal sets: {shared(p.minimal.neurons, a.minimal.neurons)}")
            print(f"load average (1 min) before, between and after: {', '.join(f'{x:.2f}' for x in load)}")
            out.append(
                {
                    "model": loaded.display_name,
                    "probe": probe,
                    "tokens": tokens,
                    "rows": [
                        {
                            "method": method,
                            "stage1_s": stage1,
                            "whole_s": whole,
                            "critical": [[n.module, n.channel] for n in masks[method].neurons],
                            "delta": masks[method].critical.delta,
                            "minimal": [[n.module, n.channel] for n in masks[method].minimal.neurons]
                            if masks[method].minimal
                            else None,
                        }
                        for method, stage1, whole in rows
                    ],
                }
            )
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
