"""Stage-1 overhead, stage-2 time and peak memory of the locator, from one run; or ``--auto``: the whole
``achilles locate`` with ``--samples auto`` against K = 100.

    python benchmarks/bench_locate.py [--model M] [--device cpu|cuda] [--repeats 3] [--random-init llama-8b]
    python benchmarks/bench_locate.py --auto [--model M] [--repeats 1]

``--auto`` runs ``locate()`` (both stages, paper parameters) with K = 100 and with ``samples="auto"``,
interleaved per round in one process, and prints the whole time, the K used and whether the critical
sets are identical, with the load average next to the times.

Stage 1 is timed against the same K forward passes without hooks (same noisy batches, same
``logits_to_keep=1``), interleaved and repeated, medians reported: the ratio is what the streaming
hooks cost. Peak memory: CUDA max allocated on a GPU, process peak RSS on the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch


def bare_forwards(model, ids, samples, batch_size, alpha, seed):
    device = next(model.parameters()).device
    embeds = model.get_input_embeddings()(ids)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        model(input_ids=ids, use_cache=False, logits_to_keep=1)  # the clean pass stage 1 also makes
        for start in range(0, samples, batch_size):
            b = min(batch_size, samples - start)
            noise = torch.randn((b, *embeds.shape[1:]), generator=gen, device=device, dtype=torch.float32)
            model(inputs_embeds=(embeds.float() + alpha * noise).to(embeds.dtype), use_cache=False, logits_to_keep=1)


#: Llama shapes for speed measurements where no checkpoint can be downloaded (weights are random).
RANDOM_CONFIGS = {
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "llama-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
}


def random_llama(name, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lm_eval_achilles.models.loading import LoadedModel

    torch.manual_seed(0)
    dt = (
        torch.bfloat16
        if dtype == "auto" and str(device).startswith("cuda")
        else (torch.float32 if dtype == "auto" else getattr(torch, dtype))
    )
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**RANDOM_CONFIGS[name])).to(dt).eval()
    return LoadedModel(model, None, name, f"random-init {name}")


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_auto(args) -> int:
    import os

    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.models.loading import load_model

    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    runs: dict[str, list] = {"K=100": [], "auto": []}
    load = [os.getloadavg()]
    for r in range(args.repeats):
        for name in ["K=100", "auto"] if r % 2 == 0 else ["auto", "K=100"]:
            cfg = LocatorConfig(samples=100 if name == "K=100" else "auto", progress=False)
            t = time.perf_counter()
            mask = locate(loaded, cfg)
            runs[name].append((time.perf_counter() - t, mask))
        load.append(os.getloadavg())
    print(f"model {loaded.display_name} on {loaded.device}, torch threads {torch.get_num_threads()}")
    ref = runs["K=100"][0][1]
    for name, rs in runs.items():
        for seconds, mask in rs:
            same = [(n.module, n.channel) for n in mask.neurons] == [(n.module, n.channel) for n in ref.neurons]
            print(
                f"  {name:<6} locate {seconds:7.1f} s   K used {mask.locator['samples_used']:>3}   critical set "
                f"{len(mask.neurons):>3} channel(s), Delta {mask.critical.delta:.3f}   identical to K=100: {same}"
            )
    med = {name: statistics.median(s for s, _ in rs) for name, rs in runs.items()}
    print(f"  whole-locate time auto / K=100 = {med['auto'] / med['K=100']:.3f} (medians of {args.repeats})")
    print("  load average (1 min) before and after each round: " + ", ".join(f"{x[0]:.2f}" for x in load))
    out = {
        name: [
            {
                "seconds": s,
                "samples_used": m.locator["samples_used"],
                "neurons": [[n.module, n.channel] for n in m.neurons],
            }
            for s, m in rs
        ]
        for name, rs in runs.items()
    }
    print(json.dumps({"model": loaded.display_name, "runs": out, "load": load}), file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=1000, help="stage-2 step cap (a random model never collapses)")
    ap.add_argument(
        "--random-init",
        choices=sorted(RANDOM_CONFIGS),
        default=None,
        help="time a randomly initialised Llama of this size instead (speed only; no hub needed)",
    )
    ap.add_argument("--auto", action="store_true", help="compare locate --samples auto with K = 100 instead")
    args = ap.parse_args()
    if args.auto:
        return bench_auto(args)

    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.locator.perturbation import perturbation_scores
    from lm_eval_achilles.locator.ranking import rank_scores
    from lm_eval_achilles.locator.search import greedy_search
    from lm_eval_achilles.models.loading import load_model

    if args.random_init:
        loaded = random_llama(
            args.random_init, args.device or ("cuda" if torch.cuda.is_available() else "cpu"), args.dtype
        )
        ids = torch.randint(0, loaded.model.config.vocab_size, (1, 115), generator=torch.Generator().manual_seed(0))
    else:
        loaded = load_model(args.model, dtype=args.dtype, device=args.device)
        ids = encode(loaded.tokenizer, PROBE_TEXT, max_tokens=None)
    model, device = loaded.model, loaded.device
    ids = ids.to(device)
    modules = candidate_modules(model)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20

    bare_s, stage1_s = [], []
    scores = None
    bare_forwards(model, ids, args.batch_size, args.batch_size, 5.0, 0)  # warm-up
    for _ in range(args.repeats):
        sync(device)
        t = time.perf_counter()
        bare_forwards(model, ids, args.samples, args.batch_size, 5.0, 42)
        sync(device)
        bare_s.append(time.perf_counter() - t)
        sync(device)
        t = time.perf_counter()
        scores = perturbation_scores(
            model, ids, modules, alpha=5.0, samples=args.samples, seed=42, batch_size=args.batch_size, progress=False
        )
        sync(device)
        stage1_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    ranking = rank_scores(scores, 10_000)
    rank_s = time.perf_counter() - t
    t = time.perf_counter()
    result = greedy_search(
        model, ids[:, :512].cpu(), [r.neuron for r in ranking], max_steps=args.max_steps, progress=False
    )
    sync(device)
    stage2_s = time.perf_counter() - t

    if str(device).startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_what = "CUDA max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_what = "process peak RSS"
    out = {
        "model": loaded.display_name,
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "probe_tokens": int(ids.shape[1]),
        "candidate_modules": len(modules),
        "samples": args.samples,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "bare_forward_s_median": statistics.median(bare_s),
        "stage1_s_median": statistics.median(stage1_s),
        "stage1_over_bare": statistics.median(stage1_s) / statistics.median(bare_s),
        "ranking_s": rank_s,
        "stage2_s": stage2_s,
        "stage2_steps": len(result.curve) - 1,
        "critical_size": result.size,
        "weights_MiB": weights_mb,
        "peak_MiB": peak,
        "peak_measure": peak_what,
    }
    print(
        f"model                {out['model']} on {out['device']} ({out['dtype']}), probe {out['probe_tokens']} tokens, "
        f"{len(modules)} candidate modules"
    )
    print(
        f"K bare forwards      {out['bare_forward_s_median']:.3f} s  (median of {args.repeats}, K={args.samples}, batch {args.batch_size})"
    )
    print(
        f"stage 1              {out['stage1_s_median']:.3f} s  -> stage1 / bare = {out['stage1_over_bare']:.3f}  (target <= 1.2)"
    )
    print(f"ranking (topk)       {rank_s:.3f} s")
    print(
        f"stage 2              {stage2_s:.3f} s  ({out['stage2_steps']} prefixes evaluated, critical set {result.size})"
    )
    print(f"peak memory          {peak:.0f} MiB ({peak_what}); weights {weights_mb:.0f} MiB")
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
