"""An exported masked model reads the same under transformers 4.x and 5.x: same config values, same
token ids, same logits, and those logits are the hooked model's.

    python benchmarks/export_compat.py [--model embedded] [--venv /tmp/achilles-tf4] [--scale 0]

Steps: (1) ``achilles export`` of ``--model`` with a fixed mask of channels in several module kinds
(attention and MLP projections, the MLP activation, norms; :data:`NEURONS`, or ``--neurons``), into a
temporary folder; (2) the hooked model's logits on :data:`TEXTS` in this process (transformers 5);
(3) a probe script loads the export with ``AutoConfig``/``AutoTokenizer``/``AutoModelForCausalLM`` in
float32, once in this interpreter and once in ``--venv``, a venv *without* system site-packages holding
``transformers==4.57.*`` and ``torch==2.13.0`` from PyPI (created when missing). Printed: each reader's
version, tokenizer class, rope base, token ids equal or not, and the largest |logit difference| of each
reader against the hooked model. Exit 1 when the ids differ or a difference exceeds ``--tol``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (module, channel) masked by default on Llama-shaped models (the embedded SmolLM2).
NEURONS = [
    ("model.layers.3.mlp.down_proj", 10),
    ("model.layers.5.mlp.act_fn", 7),
    ("model.layers.2.input_layernorm", 4),
    ("model.layers.7.self_attn.q_proj", 33),
    ("model.layers.9.self_attn.o_proj", 100),
    ("model.norm", 12),
]
TEXTS = [
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n",
]

PROBE = r"""
import json, sys, torch, transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
folder, texts, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
config = AutoConfig.from_pretrained(folder)
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
rope = getattr(config, "rope_parameters", None) or {}
result = {"version": transformers.__version__, "tokenizer": type(tok).__name__,
          "rope_theta": getattr(config, "rope_theta", None) or rope.get("rope_theta"), "ids": [], "logits": []}
with torch.no_grad():
    for t in texts:
        ids = tok(t, return_tensors="pt").input_ids
        result["ids"].append(ids[0].tolist())
        result["logits"].append(model(ids).logits[0].tolist())
json.dump(result, open(out, "w"))
"""


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} (transformers 4.57, torch 2.13.0, no system site-packages)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "transformers==4.57.*"], check=True)
    return python


def probe(python: str, folder: Path, work: Path, tag: str) -> dict:
    script = work / "probe.py"
    script.write_text(PROBE)
    out = work / f"{tag}.json"
    subprocess.run([python, str(script), str(folder), json.dumps(TEXTS), str(out)], check=True)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="hub id, local path or named model (default: embedded)")
    ap.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "achilles-tf4"))
    ap.add_argument("--scale", type=float, default=0.0)
    ap.add_argument("--neurons", default=None, help="JSON list of [module, channel] (default: NEURONS)")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    import torch
    import transformers

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
    from lm_eval_achilles.cli import main as achilles
    from lm_eval_achilles.mask.mask_file import FORMAT, Neuron
    from lm_eval_achilles.mask.masking import masked
    from lm_eval_achilles.models.loading import fingerprint, load_model

    neurons = json.loads(args.neurons) if args.neurons else NEURONS
    python4 = ensure_venv(Path(args.venv))
    loaded = load_model(args.model, dtype="float32", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mask = work / "mask.json"
        doc = {
            "format": FORMAT,
            "model": {"name_or_path": args.model or "embedded", "architecture": "", "fingerprint": ""},
            "locator": {"method": "fixed list (benchmarks/export_compat.py)"},
            "ranking": [{"module": m, "channel": c, "score": 1.0} for m, c in neurons],
            "critical": {"size": len(neurons), "baseline_ppl": 0, "masked_ppl": 0, "delta": 0, "curve": []},
            "neurons": [{"module": m, "channel": c} for m, c in neurons],
        }
        doc["model"]["architecture"] = type(loaded.model).__name__
        doc["model"]["fingerprint"] = fingerprint(loaded.model)
        mask.write_text(json.dumps(doc))
        argv = ["export", "--mask", str(mask), "--scale", str(args.scale), "--dtype", "float32", "--out"]
        argv += [str(work / "export")] + (["--model", args.model] if args.model else [])
        t = time.perf_counter()
        if achilles(argv) != 0:
            return 1
        export_s = time.perf_counter() - t
        with torch.no_grad():
            clean = [loaded.model(loaded.tokenizer(t, return_tensors="pt").input_ids).logits[0] for t in TEXTS]
        hooked = []
        with torch.no_grad(), masked(loaded.model, [Neuron(m, c) for m, c in neurons], scale=args.scale):
            for text in TEXTS:
                ids = loaded.tokenizer(text, return_tensors="pt").input_ids
                hooked.append((ids[0].tolist(), loaded.model(ids).logits[0]))
        readers = [probe(sys.executable, work / "export", work, "v5"), probe(str(python4), work / "export", work, "v4")]
    print(f"model {args.model or 'embedded'}; writer transformers {transformers.__version__}; export {export_s:.1f}s")
    print(f"mask: {len(neurons)} channels, scale {args.scale}: {', '.join(f'{m}[{c}]' for m, c in neurons)}")
    print(f"{len(TEXTS)} texts, {sum(len(ids) for ids, _ in hooked)} tokens, logits in float32")
    effect = max(float((c - h).abs().max()) for c, (_, h) in zip(clean, hooked, strict=True))
    print(f"  the mask itself moves the logits by up to {effect:.3g} (hooked vs unmasked)")
    ok = effect > 10 * args.tol
    for r in readers:
        same_ids = all(ids == r_ids for (ids, _), r_ids in zip(hooked, r["ids"], strict=True))
        diff = max(
            float((torch.tensor(r_logits) - logits).abs().max())
            for (_, logits), r_logits in zip(hooked, r["logits"], strict=True)
        )
        ok &= same_ids and diff <= args.tol
        print(
            f"  transformers {r['version']:>7}: tokenizer {r['tokenizer']}, rope_theta {r['rope_theta']}, "
            f"ids equal {same_ids}, max |logits - hooked| {diff:.3g}"
        )
    print("OK: both versions read the export as the hooked model" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
