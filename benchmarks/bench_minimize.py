"""``--minimize`` against plain backward pruning, side by side in one process, from the same critical prefix.

    python benchmarks/bench_minimize.py [--model embedded] [--mask MASK.json] [--modules GLOBS] [--rounds 1]

Without ``--mask`` the paper's locator runs first (stage 1 and 2, default parameters, ``--modules`` to
narrow the candidates); with ``--mask`` its ranking, critical prefix and stage-2 curve are used (the file
must belong to ``--model``). Then, in alternating order per round, each on a fresh memo:

- **plain pruning**: the ``subsets`` study's ``prune_minimal`` (every round evaluates every leave-one-out
  set, removes the one whose removal keeps Delta highest);
- **minimize**: :func:`lm_eval_achilles.locator.minimize.minimize` with its default steps.

Printed: final size, Delta, sets evaluated, batched forwards, seconds, and the load average before and
after (the machine may be shared: compare the two columns of one run, not runs on different days).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="hub id or local path (default: the embedded model)")
    ap.add_argument("--mask", default=None, help="a mask file of --model: skip the locator, use its prefix")
    ap.add_argument("--modules", default=None, help="narrow the locator's candidates (as achilles locate)")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-evals", type=int, default=None, help="budget of both searches (plain: stops a round early)")
    args = ap.parse_args()

    import torch

    from lm_eval_achilles.defaults import MAX_PPL_TOKENS, PROBE_TEXT
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.locator.minimize import minimize
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.mask.mask_file import load_mask
    from lm_eval_achilles.models.loading import load_model
    from lm_eval_achilles.paper.studies import subsets

    load_before = os.getloadavg()
    loaded = load_model(args.model, dtype="float32" if not torch.cuda.is_available() else "auto")
    if args.mask:
        mask = load_mask(args.mask)
        located_s = None
    else:
        t = time.perf_counter()
        mask = locate(loaded, progress=False, modules=args.modules, epsilon=args.epsilon)
        located_s = time.perf_counter() - t
    text = mask.locator.get("test_text") or mask.locator.get("text") or PROBE_TEXT  # stage 2's text
    ids = encode(loaded.tokenizer, text, max_tokens=None)[:, :MAX_PPL_TOKENS]
    prefix = list(mask.neurons)
    if not prefix:
        print("no critical set: nothing to minimize")
        return 1
    curve = [math.log(p) for _, p in mask.critical.curve]
    baseline = curve[0]
    ranking = [r.neuron for r in mask.ranking]

    counted = {"sets": 0, "forwards": 0}
    real_eval = subsets.evaluate_sets

    def counting_eval(model, input_ids, sets, batch_size=8, **kw):
        if args.max_evals is not None and counted["sets"] + len(sets) > args.max_evals:
            raise TimeoutError
        counted["sets"] += len(sets)
        counted["forwards"] += math.ceil(len(sets) / batch_size)
        return real_eval(model, input_ids, sets, batch_size=batch_size, **kw)

    def plain():
        subsets.evaluate_sets = counting_eval
        counted.update(sets=0, forwards=0)
        t = time.perf_counter()
        try:
            found, log = subsets.prune_minimal(loaded.model, ids, prefix, args.epsilon, args.batch_size, baseline)
            out = {"size": len(found), "delta": log[-1]["delta"], "verified_minimal": True}
        except TimeoutError:
            out = {"size": None, "delta": None, "verified_minimal": False}
        finally:
            subsets.evaluate_sets = real_eval
        return {**out, "sets": counted["sets"], "forwards": counted["forwards"], "seconds": time.perf_counter() - t}

    def ours():
        r = minimize(
            loaded.model,
            ids,
            prefix,
            ranking,
            args.epsilon,
            curve_nlls=curve if mask.locator.get("step", 1) == 1 else None,
            baseline=baseline,
            batch_size=args.batch_size,
            max_evals=args.max_evals,
            progress=False,
        )
        return {
            "size": len(r.neurons),
            "delta": r.delta,
            "verified_minimal": r.verified_minimal,
            "sets": r.sets_evaluated,
            "forwards": r.forward_passes,
            "seconds": r.seconds,
            "method": r.method,
            "neurons": [[n.module, n.channel] for n in r.neurons],
        }

    runs: dict[str, list[dict]] = {"plain pruning": [], "minimize": []}
    t_runs = time.perf_counter()
    for i in range(args.rounds):
        for name in ["minimize", "plain pruning"] if i % 2 == 0 else ["plain pruning", "minimize"]:
            runs[name].append((ours if name == "minimize" else plain)())
    load_after = os.getloadavg()
    print(
        f"model {loaded.display_name}, prefix {len(prefix)} channels (Delta {mask.critical.delta:.3f}), "
        f"epsilon {args.epsilon}, batch {args.batch_size}, torch threads {torch.get_num_threads()}"
        + (f", locate {located_s:.1f} s" if located_s else f", mask {args.mask}")
    )
    print(f"{'':<16}{'size':>6}{'Delta':>9}{'sets':>7}{'forwards':>10}{'seconds':>10}  verified minimal")
    for name, rs in runs.items():
        for r in rs:
            size = "-" if r["size"] is None else r["size"]
            d = "-" if r["delta"] is None else f"{r['delta']:.3f}"
            print(
                f"{name:<16}{size:>6}{d:>9}{r['sets']:>7}{r['forwards']:>10}{r['seconds']:>10.1f}  "
                f"{r['verified_minimal']}" + (f"  ({r['method']})" if "method" in r else "")
            )
    print(
        f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after {', '.join(f'{x:.2f}' for x in load_after)} ({time.perf_counter() - t_runs:.0f} s of searches)"
    )
    print(
        json.dumps({"prefix": len(prefix), "runs": runs, "load_before": load_before, "load_after": load_after}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
