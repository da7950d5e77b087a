"""Throughput of ``achilles_masked`` (hooks, fold) relative to plain ``hf``, from one run.

    python benchmarks/bench_eval.py [--pretrained embedded] [--mask results/smollm2-135m-instruct/mask.json]
                                    [--batch-size 8] [--repeats 3] [--device cpu]

The three models are built once; each timed round evaluates the same tasks (a loglikelihood_rolling task
and a generate_until task, benchmarks/tasks/) with the same batch size, in interleaved order, and the
median wall time per model is reported as a throughput ratio to ``hf`` (higher is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", default="embedded")
    ap.add_argument("--mask", default=str(HERE.parent / "results" / "smollm2-135m-instruct" / "mask.json"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tasks", default="achilles_bench_rolling,achilles_bench_gen")
    args = ap.parse_args()

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from lm_eval_achilles.harness.lm_model import AchillesMaskedLM
    from lm_eval_achilles.models.loading import default_device, resolve_pretrained

    device = args.device or default_device()
    path = resolve_pretrained(args.pretrained)
    common = dict(dtype=args.dtype, batch_size=args.batch_size, device=device)
    models = {
        "hf": HFLM(pretrained=path, **common),
        "achilles_masked (hooks)": AchillesMaskedLM(pretrained=path, mask=args.mask, apply="hooks", **common),
        "achilles_masked (fold)": AchillesMaskedLM(pretrained=path, mask=args.mask, apply="fold", **common),
    }
    tm = TaskManager(include_path=str(HERE / "tasks"))
    tasks = args.tasks.split(",")
    times: dict[str, list[float]] = {name: [] for name in models}
    for lm in models.values():  # warm-up
        lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=tm, limit=2, verbosity="ERROR")
    for r in range(args.repeats):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            t = time.perf_counter()
            lm_eval.simple_evaluate(model=models[name], tasks=tasks, task_manager=tm, verbosity="ERROR")
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["hf"])
    print(f"tasks {args.tasks}, batch size {args.batch_size}, device {device}, {args.repeats} interleaved rounds")
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"median_s": med, "throughput_vs_hf": base / med, "all_s": ts}
        print(f"  {name:<26} {med:8.2f} s   throughput vs hf = {base / med:.3f}")
    print("targets: hooks >= 0.95, fold >= 0.99")
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
