"""Stage-1 overhead, stage-2 time and peak memory of the locator, from one run; or ``--auto``: the whole
``achilles locate`` with ``--samples auto`` against K = 100; or ``--fastest``: the paper's defaults against
faster settings, per model and probe text.

    python benchmarks/bench_locate.py [--model M] [--device cpu|cuda] [--repeats 3] [--random-init llama-8b]
    python benchmarks/bench_locate.py --auto [--model M] [--repeats 1]
    python benchmarks/bench_locate.py --fastest [--model M ...] [--probe default long] [--repeats 1]

``--fastest`` runs the whole ``locate()`` (model loaded beforehand) with the paper's defaults (perturbation,
alpha 5, K = 100, the linear prefix walk) and with every setting of :data:`FAST_SETTINGS`, one after the
other in each round, the order rotated between rounds, on each ``--model`` and ``--probe`` (``default``: the
paper's 75-token probe; ``long``: the four WikiText-style paragraphs of the studies, about 500 tokens).
Per setting it prints the whole-locate time (median over rounds), the noisy samples and the forwards of
each stage, the critical set's size and Delta, and Delta measured again independently (one plain forward
of the masked model on the test text against one of the unmasked model, through the hooks, not stage 2's
batched evaluation). A setting is *valid* when that Delta is >= epsilon and its set is no larger than the
paper's; the fastest valid one is named with its speed-up over the paper's defaults.

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


#: ``--fastest``: the settings timed against the paper's defaults (LocatorConfig fields; the rest default).
PAPER_SETTINGS = dict(method="perturbation", samples=100, search="linear")
FAST_SETTINGS: dict[str, dict] = {
    "galloping (K=100)": dict(samples=100),
    "auto": dict(samples="auto"),
    "K=50": dict(samples=50),
    "K=20": dict(samples=20, batch_size=20),
    "K=10": dict(samples=10, batch_size=10),
    "K=5": dict(samples=5, batch_size=5),
    "K=2": dict(samples=2, batch_size=2),
    "K=1": dict(samples=1, batch_size=1),
    # one masked set per stage-2 forward: fewer rows in all (on a CPU each row costs), more forwards
    "K=5, 1 set/forward": dict(samples=5, batch_size=5, search_batch_size=1),
    "K=1, 1 set/forward": dict(samples=1, batch_size=1, search_batch_size=1),
    "attribution": dict(method="attribution"),
}


def stage1_forwards(mask) -> int:
    """Forward passes of stage 1 as run: the clean pass and ceil(K / batch) batched noisy passes for
    perturbation (each auto look adds its own), one forward + one backward (counted 1) otherwise."""
    loc = mask.locator
    if loc["method"] != "perturbation":
        return 1
    used, batch = int(loc["samples_used"]), int(loc["batch_size"])
    if loc["samples"] == "auto":
        looks = loc["samples_auto"]["looks"]
        steps = [b - a for a, b in zip([0] + [lk[0] for lk in looks], [lk[0] for lk in looks])]
        return 1 + sum(-(-n // batch) for n in steps)
    return 1 + -(-used // batch)


def stage2_forwards(mask) -> int:
    """Batched forwards of masked sets in stage 2 (an auto run's looks included), plus the baseline's one."""
    auto = mask.locator.get("samples_auto") or {}
    return 1 + (mask.critical.forward_passes or 0) + auto.get("look_forwards", 0)


def independent_delta(model, test_ids, neurons) -> float:
    """Delta of ``neurons`` on ``test_ids`` from two plain forwards (unmasked, then masked by hooks)."""
    from lm_eval_achilles.locator.perplexity import delta, mean_nll
    from lm_eval_achilles.mask.masking import masked

    base = float(mean_nll(model, test_ids)[0])
    with masked(model, neurons):
        return delta(float(mean_nll(model, test_ids)[0]), base)


def bench_fastest(args) -> int:
    import os

    from lm_eval_achilles.defaults import MAX_PPL_TOKENS
    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.models.loading import load_model

    texts = probe_texts()
    names = ["paper"] + [n for n in FAST_SETTINGS if n in args.settings or not args.settings]
    summary = []
    for model_name in args.model or [None]:
        loaded = load_model(model_name, dtype=args.dtype, device=args.device)
        for probe in args.probe:
            text = texts[probe]
            configs = {"paper": LocatorConfig(text=text, progress=False, **PAPER_SETTINGS)}
            configs.update({n: LocatorConfig(text=text, progress=False, **FAST_SETTINGS[n]) for n in names[1:]})
            test_ids = encode(loaded.tokenizer, text, MAX_PPL_TOKENS)
            runs: dict[str, list] = {n: [] for n in names}
            load = [os.getloadavg()[0]]
            for r in range(args.repeats):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    t = time.perf_counter()
                    mask = locate(loaded, configs[name])
                    runs[name].append((time.perf_counter() - t, mask))
                load.append(os.getloadavg()[0])
            tokens = runs["paper"][0][1].locator["probe_tokens"]
            print(
                f"\n## {loaded.display_name}, {probe} probe ({tokens} tokens), {loaded.device}, "
                f"{dtype_of(loaded)}, torch threads {torch.get_num_threads()}, {args.repeats} round(s)\n"
            )
            print(
                "| settings | whole locate (s) | vs paper | noisy samples | stage-1 forwards | stage-2 forwards "
                "| critical set | Delta | Delta, independent | valid |"
            )
            print("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
            paper_s = statistics.median(s for s, _ in runs["paper"])
            paper_size = len(runs["paper"][0][1].neurons)
            rows = []
            for name in names:
                seconds = statistics.median(s for s, _ in runs[name])
                mask = runs[name][0][1]
                c = mask.critical
                size = len(mask.neurons)
                indep = independent_delta(loaded.model, test_ids, mask.neurons) if size else float("nan")
                valid = size > 0 and indep >= float(mask.locator["epsilon"]) and size <= paper_size
                same = {(n.module, n.channel) for n in mask.neurons} == {
                    (n.module, n.channel) for n in runs["paper"][0][1].neurons
                }
                rows.append((name, seconds, valid, size))
                samples = mask.locator.get("samples_used", "-")
                print(
                    f"| {name} | {seconds:.1f} | {paper_s / seconds:.2f}x | {samples} | {stage1_forwards(mask)} "
                    f"| {stage2_forwards(mask)} | {size}{' (same)' if same else ''} | {c.delta:.3f} "
                    f"| {indep:.3f} | {'yes' if valid else 'no'} |"
                )
            fast = min((r for r in rows if r[2] and r[0] != "paper"), key=lambda r: r[1], default=None)
            print(f"\nload average (1 min) before and after each round: {', '.join(f'{x:.2f}' for x in load)}")
            if fast is None:
                print("fastest valid setting: none")
            else:
                print(
                    f"fastest valid setting: {fast[0]}, {paper_s / fast[1]:.2f}x faster than the paper's defaults "
                    f"({fast[1]:.1f} s vs {paper_s:.1f} s), critical set {fast[3]} vs {paper_size}"
                )
            summary.append(
                {
                    "model": loaded.display_name,
                    "probe": probe,
                    "tokens": tokens,
                    "load": load,
                    "runs": {
                        n: [
                            {
                                "seconds": s,
                                "samples_used": m.locator.get("samples_used"),
                                "neurons": [[x.module, x.channel] for x in m.neurons],
                                "delta": m.critical.delta,
                                "stage2_forwards": stage2_forwards(m),
                            }
                            for s, m in rs
                        ]
                        for n, rs in runs.items()
                    },
                }
            )
    print(json.dumps(summary), file=sys.stderr)
    return 0


def dtype_of(loaded) -> str:
    """The loaded model's weight dtype, as ``float32``."""
    from lm_eval_achilles.formatting import dtype_name

    return dtype_name(next(loaded.model.parameters()).dtype)


def probe_texts() -> dict[str, str]:
    """``--probe``'s texts: ``default``, the paper's probe; ``long``, the studies' WikiText-style paragraphs."""
    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.paper.studies.texts import WIKITEXT

    return {"default": PROBE_TEXT, "long": " ".join(WIKITEXT)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, nargs="*", help="model(s); default: the embedded one")
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
    ap.add_argument("--fastest", action="store_true", help="the paper's defaults against faster settings instead")
    ap.add_argument("--probe", nargs="+", choices=["default", "long"], default=["default", "long"])
    ap.add_argument("--settings", nargs="*", default=[], help=f"--fastest: a subset of {', '.join(FAST_SETTINGS)}")
    args = ap.parse_args()
    if args.fastest:
        return bench_fastest(args)
    args.model = (args.model or [None])[0]
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
