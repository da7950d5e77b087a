"""Overhead of ``achilles_masked``, like with like, from one run.

    python benchmarks/bench_eval.py [--pretrained embedded] [--mask results/smollm2-135m-instruct/mask.json]
                                    [--batch-size 8] [--rounds 5] [--new-tokens 32] [--device cpu]

Two pairs whose outputs are identical, so a time ratio is pure overhead (a masked model that collapses
generates different text of a different length, so masked vs plain ``hf`` would mix overhead with
behaviour):

- ``achilles_masked top_n=0`` (nothing masked, no hooks) against plain ``hf``: target >= 0.99;
- ``achilles_masked apply=hooks`` against ``apply=fold`` on the same mask: target hooks >= 0.95 x fold.

Every model is built once. Each timed round evaluates the same tasks (``benchmarks/tasks/``: a
loglikelihood_rolling task and a generate_until task forced to exactly ``--new-tokens`` new tokens:
``min_new_tokens`` = ``max_gen_toks``, EOS suppressed until then) with the same batch size, the models in a
rotating order; the median wall time per model gives the throughput ratios. The outputs of each pair are
compared (generated texts and log-likelihoods) and printed as identical or not, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def outputs(results) -> list:
    """Per task, the filtered responses of every document, in document order (to compare two models)."""
    out = []
    for task in sorted(results["samples"]):
        for s in sorted(results["samples"][task], key=lambda s: s["doc_id"]):
            out.append((task, s["doc_id"], json.dumps(s["filtered_resps"], default=str)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", default="embedded")
    ap.add_argument("--mask", default=str(HERE.parent / "results" / "smollm2-135m-instruct" / "mask.json"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tasks", default="achilles_bench_rolling,achilles_bench_gen")
    args = ap.parse_args()

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from lm_eval_achilles.harness.lm_model import AchillesMaskedLM
    from lm_eval_achilles.models.loading import default_device, resolve_pretrained

    device = args.device or default_device()
    path = resolve_pretrained(args.pretrained)
    common = dict(dtype=args.dtype, batch_size=args.batch_size, device=device)
    models = {
        "hf": HFLM(pretrained=path, **common),
        "achilles_masked top_n=0": AchillesMaskedLM(pretrained=path, mask=args.mask, top_n=0, **common),
        "achilles_masked hooks": AchillesMaskedLM(pretrained=path, mask=args.mask, apply="hooks", **common),
        "achilles_masked fold": AchillesMaskedLM(pretrained=path, mask=args.mask, apply="fold", **common),
    }
    pairs = [("achilles_masked top_n=0", "hf", 0.99), ("achilles_masked hooks", "achilles_masked fold", 0.95)]
    tm = TaskManager(include_path=str(HERE / "tasks"))
    tasks = args.tasks.split(",")
    n = args.new_tokens
    gen = {"max_gen_toks": n, "min_new_tokens": n}  # exactly n new tokens for every document and model

    def evaluate(lm, limit=None):
        return lm_eval.simple_evaluate(
            model=lm, tasks=tasks, task_manager=tm, limit=limit, gen_kwargs=gen, log_samples=True, verbosity="ERROR"
        )

    for lm in models.values():  # warm-up
        evaluate(lm, limit=2)
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    seen: dict[str, list] = {}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
            t = time.perf_counter()
            res = evaluate(models[name])
            times[name].append(time.perf_counter() - t)
            seen.setdefault(name, outputs(res))
        load.append(os.getloadavg()[0])
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"tasks {args.tasks}, {n} new tokens per generation, batch size {args.batch_size}, device {device}, "
        f"torch threads {torch.get_num_threads()}, {args.rounds} rotating rounds, medians"
    )
    for name in names:
        print(f"  {name:<26} {med[name]:8.2f} s   (all: {', '.join(f'{t:.2f}' for t in times[name])})")
    out = {"median_s": med, "all_s": times, "load_1min": load, "pairs": []}
    for a, b, target in pairs:
        ratio = med[b] / med[a]
        same = seen[a] == seen[b]
        print(f"  throughput {a} / {b} = {ratio:.3f}  (target >= {target})   identical outputs: {same}")
        out["pairs"].append({"a": a, "b": b, "throughput_ratio": ratio, "target": target, "identical": same})
    print("  load average (1 min) before and after each round: " + ", ".join(f"{x:.2f}" for x in load))
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
