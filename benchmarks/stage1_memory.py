"""Stage 1's extra memory: the printed estimate against what torch's allocator counts, and the estimate
for large models from their configuration alone (built on the meta device, no weights).

    python benchmarks/stage1_memory.py [--models embedded,gemma-3-270m] [--batch-size 25] [--samples 25]

For each named model (float32 on the CPU, the default probe, every candidate module): the estimate
(:func:`~lm_eval_achilles.locator.perturbation.stage1_memory`), and, from torch's profiler, the bytes the
stage-1 state holds after its clean and noisy forwards, and its peak beyond the bare noisy forwards of
one batch. Then the estimate alone for Llama-3-8B- and Llama-3-70B-shaped models in bfloat16 at the
default probe's length (in the embedded tokenizer's tokens) and at the 512-token cap.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile


def allocations(fn) -> tuple[int, int]:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        kept = fn()  # noqa: F841 - alive until counted
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    now = peak = 0
    for e in events:
        now += e.self_cpu_memory_usage
        peak = max(peak, now)
    return now, peak


def measure(name: str, batch: int, samples: int) -> None:
    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.formatting import human_bytes
    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.locator.perturbation import Perturbation, stage1_memory
    from lm_eval_achilles.models.forward import forward
    from lm_eval_achilles.models.loading import load_model

    loaded = load_model(name, dtype="float32", device="cpu")
    model = loaded.model
    ids = encode(loaded.tokenizer, PROBE_TEXT)
    modules = candidate_modules(model)
    mem = stage1_memory(model, ids, modules, batch)
    print(f"\n{name}: {len(modules)} candidate modules, probe {ids.shape[1]} tokens, batch {batch}, K {samples}")
    print(f"  estimate: {mem.describe()}")

    def stage1():
        state = Perturbation(model, ids, modules, batch_size=batch, cap=samples)
        state.add(samples)
        return state

    held, peak = allocations(stage1)
    x = model.get_input_embeddings()(ids).expand(batch, -1, -1).contiguous().detach()

    def bare():
        with torch.no_grad():
            forward(model, True, inputs_embeds=x)

    _, bare_peak = allocations(bare)
    state_est = mem.held() + mem.scratch()
    print(
        f"  held after stage 1: measured {human_bytes(held)} vs estimate {human_bytes(state_est)} "
        f"(ratio {held / state_est:.4f}); per entry {(held - mem.scratch()) / mem.entries:.3f} bytes "
        f"vs {mem.bytes_per_entry}"
    )
    # stage 2: one batched forward of 8 rows, the NLL in chunks (default) or all positions at once (as before)
    from lm_eval_achilles.locator.perplexity import mean_nll

    rows = ids.expand(8, -1)
    _, chunked = allocations(lambda: mean_nll(model, rows))
    _, whole = allocations(lambda: mean_nll(model, rows, positions=rows.shape[1]))
    vocab = model.get_output_embeddings().weight.shape[0]
    logits = 8 * rows.shape[1] * vocab * 4
    print(
        f"  stage 2, 8 rows x {rows.shape[1]} tokens x vocabulary {vocab}: peak {human_bytes(chunked)} chunked vs "
        f"{human_bytes(whole)} all positions at once (the model's own float32 logits: {human_bytes(logits)})"
    )
    print(
        f"  peak beyond the bare forward: measured {human_bytes(peak - bare_peak)} vs estimate "
        f"{human_bytes(mem.total())} (ratio {(peak - bare_peak) / mem.total():.4f}); bare forward peak "
        f"{human_bytes(bare_peak)}"
    )


def llama_shape(name: str, batch: int, tokens: list[int]) -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.locator.perturbation import Stage1Memory
    from lm_eval_achilles.mask.masking import declared_output_size

    shapes = {
        "Llama-3-8B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32),
        "Llama-3-70B": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64),
    }
    cfg = LlamaConfig(vocab_size=128256, num_key_value_heads=8, **shapes[name])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    modules = candidate_modules(model)
    # widths as the modules declare them (a forward pass on the meta device is not possible); the
    # activation function's output is the MLP's intermediate width
    table = dict(model.named_modules())
    widths = {m: declared_output_size(table[m]) or cfg.intermediate_size for m in modules}
    base = Stage1Memory(0, widths, 2, batch, cfg.hidden_size)
    print(
        f"\n{name} (bfloat16, {len(modules)} candidate modules, {sum(base.widths.values())} channels, batch {batch}):"
    )
    for t in tokens:
        print(f"  T = {t}: {Stage1Memory(t, base.widths, base.elem, batch, base.hidden).describe()}")
    from lm_eval_achilles.formatting import human_bytes
    from lm_eval_achilles.locator.perplexity import NLL_CHUNK_ELEMENTS

    logits = 8 * 512 * cfg.vocab_size
    print(
        f"  stage 2, 8 sets x 512 tokens: the model's bfloat16 logits {human_bytes(logits * 2)}, + float32 "
        f"log-softmax chunks <= {human_bytes(2 * NLL_CHUNK_ELEMENTS * 4)} (all at once: + {human_bytes(2 * logits * 4)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="embedded,gemma-3-270m")
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--samples", type=int, default=25)
    args = ap.parse_args()
    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.locator.perplexity import encode

    for name in [m for m in args.models.split(",") if m]:
        measure(name, args.batch_size, args.samples)
    from transformers import AutoTokenizer

    from lm_eval_achilles.models.loading import resolve_pretrained

    probe = int(encode(AutoTokenizer.from_pretrained(resolve_pretrained(None)), PROBE_TEXT).shape[1])
    for name in ("Llama-3-8B", "Llama-3-70B"):
        llama_shape(name, args.batch_size, [probe, 512])


if __name__ == "__main__":
    main()
