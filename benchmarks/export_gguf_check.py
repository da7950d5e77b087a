"""``achilles export --format gguf`` read back by transformers equals the hooked model, on any GGUF file.

    python benchmarks/export_gguf_check.py FOLDER FILE.gguf [--neurons JSON]

Loads FILE.gguf from FOLDER (dequantised, float32, CPU), writes a mask of :data:`NEURONS` (or
``--neurons``, a JSON list of [module, channel]), exports it with ``--format gguf``, loads the written
GGUF back with ``gguf_file=`` and prints the largest |logit difference| against the hooked model on
one text, next to the mask's own effect. Exit 1 when the difference exceeds 1e-5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

#: Gemma-3-shaped default: MLP projections, an activation, norms (gain 1 + w), attention o/v.
NEURONS = [
    ["model.layers.3.mlp.down_proj", 10],
    ["model.layers.5.mlp.act_fn", 7],
    ["model.layers.2.post_attention_layernorm", 4],
    ["model.layers.4.self_attn.o_proj", 5],
    ["model.layers.6.self_attn.v_proj", 9],
    ["model.norm", 12],
]
TEXT = "The capital of France is Paris, and the capital of Germany is"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("file")
    ap.add_argument("--neurons", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

    import torch
    from transformers import AutoModelForCausalLM

    from lm_eval_achilles.cli import main as achilles
    from lm_eval_achilles.mask.mask_file import FORMAT, Neuron
    from lm_eval_achilles.mask.masking import masked
    from lm_eval_achilles.models.loading import fingerprint, load_model

    neurons = json.loads(args.neurons) if args.neurons else NEURONS
    loaded = load_model(args.folder, gguf_file=args.file, dtype="float32", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        doc = {
            "format": FORMAT,
            "model": {"name_or_path": args.folder, "architecture": type(loaded.model).__name__},
            "locator": {"method": "fixed list (benchmarks/export_gguf_check.py)"},
            "ranking": [{"module": m, "channel": c, "score": 1.0} for m, c in neurons],
            "critical": {"size": len(neurons), "baseline_ppl": 0, "masked_ppl": 0, "delta": 0, "curve": []},
            "neurons": [{"module": m, "channel": c} for m, c in neurons],
        }
        doc["model"]["fingerprint"] = fingerprint(loaded.model)
        (Path(tmp) / "mask.json").write_text(json.dumps(doc))
        argv = ["export", "--format", "gguf", "--model", args.folder, "--gguf-file", args.file]
        if achilles([*argv, "--mask", str(Path(tmp) / "mask.json"), "--out", str(Path(tmp) / "out")]) != 0:
            return 1
        ids = loaded.tokenizer(TEXT, return_tensors="pt").input_ids
        with torch.no_grad():
            clean = loaded.model(ids).logits
            with masked(loaded.model, [Neuron(m, c) for m, c in neurons]):
                hooked = loaded.model(ids).logits
            back = AutoModelForCausalLM.from_pretrained(Path(tmp) / "out", gguf_file=args.file, dtype=torch.float32)
            diff = float((back.eval()(ids).logits - hooked).abs().max())
    effect = float((hooked - clean).abs().max())
    print(f"{args.file}: {len(neurons)} channels ({', '.join(f'{m}[{c}]' for m, c in neurons)}), {ids.shape[1]} tokens")
    print(f"  mask effect (hooked vs unmasked) {effect:.3g}; written GGUF vs hooked: max |logit diff| {diff:.3g}")
    return 0 if diff <= 1e-5 and effect > 1e-3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
