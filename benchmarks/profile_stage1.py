"""Where stage 1's time goes beyond the K bare noisy forwards, from one run.

    python benchmarks/profile_stage1.py [--model M] [--device cpu|cuda] [--repeats 3]

Times the same K noisy forward passes (same noise, batch size, ``logits_to_keep=1``) with different
hook bodies on every candidate module, interleaved in rotating order, medians reported:

- ``bare``: no hooks (what stage 1 cannot go below);
- ``no-op hooks``: hooks that return at once, i.e. the cost of calling a Python hook per module and batch;
- ``stage 1 (this package)``: :func:`~lm_eval_achilles.locator.perturbation.perturbation_scores`;
- ``vector_norm L1``: the previous body (difference, then ``linalg.vector_norm(ord=1, dim=0)``);
- ``sub + abs + sum``: the same arithmetic with fresh tensors instead of a reused buffer.

It also prints how many bytes of activations the hooks read per forward, and whether the variants'
rankings (top 1000 entries) are identical to this package's, so a faster body that changed the
ranking would show.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def noisy_batches(model, ids, samples, batch_size, alpha=5.0, seed=42):
    device = next(model.parameters()).device
    embeds = model.get_input_embeddings()(ids).detach()
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, samples, batch_size):
        b = min(batch_size, samples - start)
        noise = torch.randn((b, *embeds.shape[1:]), generator=gen, device=device, dtype=torch.float32)
        out.append((embeds.float() + alpha * noise).to(embeds.dtype))
    return out


def run_variant(model, ids, modules, make_batches, body):
    """Clean forward recording outputs, then the noisy batches with ``body(name, t, clean, sums)`` as hook."""
    from lm_eval_achilles.mask.hooks import first_tensor, hooked

    clean, sums = {}, {}

    def record(name):
        def hook(_m, _i, out):
            t = first_tensor(out)
            if isinstance(t, torch.Tensor) and t.dim() == 3:
                clean[name] = t[0].detach().clone()
                sums[name] = torch.zeros(t.shape[1:], dtype=torch.float32, device=t.device)

        return hook

    def noisy(name):
        def hook(_m, _i, out):
            t = first_tensor(out)
            if name in clean:
                body(name, t, clean[name], sums)

        return hook

    with torch.no_grad():
        with hooked(model, {n: record(n) for n in modules}):
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
        batches = make_batches()
        if body is None:
            for x in batches:
                model(inputs_embeds=x, use_cache=False, logits_to_keep=1)
            return clean
        with hooked(model, {n: noisy(n) for n in modules}):
            for x in batches:
                model(inputs_embeds=x, use_cache=False, logits_to_keep=1)
    return sums


def noop(name, t, clean, sums):
    return None


def vector_norm_l1(name, t, clean, sums):
    sums[name] += torch.linalg.vector_norm(torch.sub(t, clean), ord=1, dim=0, dtype=torch.float32)


def sub_abs_sum(name, t, clean, sums):
    sums[name] += torch.sub(t, clean).abs().sum(dim=0, dtype=torch.float32)


def main() -> int:
    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.locator.perturbation import perturbation_scores
    from lm_eval_achilles.locator.ranking import rank_scores
    from lm_eval_achilles.models.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    model, device = loaded.model, loaded.device
    ids = encode(loaded.tokenizer, PROBE_TEXT, max_tokens=None).to(device)
    modules = candidate_modules(model)

    def batches():  # drawn inside the timed region, as stage 1 draws them
        return noisy_batches(model, ids, args.samples, args.batch_size)

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    def package(_batches=None):
        return perturbation_scores(
            model, ids, modules, samples=args.samples, batch_size=args.batch_size, seed=42, progress=False
        )

    variants = {
        "bare": lambda b: run_variant(model, ids, modules, b, None),
        "no-op hooks": lambda b: run_variant(model, ids, modules, b, noop),
        "stage 1 (this package)": package,
        "vector_norm L1": lambda b: run_variant(model, ids, modules, b, vector_norm_l1),
        "sub + abs + sum": lambda b: run_variant(model, ids, modules, b, sub_abs_sum),
    }
    clean = variants["bare"](lambda: noisy_batches(model, ids, args.batch_size, args.batch_size))  # warm-up
    per_forward = sum(t.numel() * t.element_size() for t in clean.values()) * args.batch_size
    times: dict[str, list[float]] = {n: [] for n in variants}
    results = {}
    names = list(variants)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync()
            t = time.perf_counter()
            results[name] = variants[name](batches)
            sync()
            times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(ts) for n, ts in times.items()}
    print(
        f"model {loaded.display_name} on {device}, {len(modules)} hooked modules, probe {ids.shape[1]} tokens, "
        f"K={args.samples} in batches of {args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"{args.repeats} rotating rounds, medians"
    )
    print(f"activations the hooks read per forward of {args.batch_size} samples: {per_forward / 2**20:.0f} MiB")
    ref = [(e.module, e.channel) for e in rank_scores(results["stage 1 (this package)"], 1000)]
    for name in names:
        line = f"  {name:<24} {med[name]:8.3f} s   / bare = {med[name] / med['bare']:.3f}"
        if name not in ("bare", "no-op hooks"):
            sums = results[name]
            if name != "stage 1 (this package)":
                sums = {k: v / args.samples for k, v in sums.items()}
            same = [(e.module, e.channel) for e in rank_scores(sums, 1000)] == ref
            line += f"   top-1000 ranking identical to this package's: {same}"
        print(line + f"   (all: {', '.join(f'{t:.2f}' for t in times[name])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
