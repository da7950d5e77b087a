"""The regression gate's real case: the embedded model against copies of itself changed in known ways.

Writes, under ``--work`` (default /tmp/achilles-track):

- ``ft-25``, ``ft-50``, ``ft-100`` (``--steps``): full fine-tuning (AdamW, lr 2e-5, 128-token windows,
  batch 1) on the packaged sample text (WikiText and C4 samples), checkpoints along the way;
- ``rescaled-0.5``: the base model with the critical neuron's weights (row 507 of layer 11's
  ``mlp.down_proj``) multiplied by 0.5;
- ``gsm-keystone``, ``gsm-lora``, ``gsm-full``: ``achilles finetune`` on GSM-Symbolic word problems
  (``achilles data gsm_symbolic``) for ``--gsm-steps`` steps, training only the 64 keystone neurons'
  rows (merged with ``achilles export --delta``), LoRA through peft, and every weight;

then runs ``achilles track`` over base, the fine-tuning checkpoints and the rescaled copy into
``--out``, and ``achilles check`` of each copy against the base mask with the baseline rules (transfer
included), writing the check outputs and JUnit files beside the track.

    python benchmarks/track_checkpoints.py --out results/smollm2-135m-instruct/track
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def sample_text() -> str:
    from lm_eval_achilles.resources import sample_data_dir

    texts = []
    for name in ("wikitext", "c4"):
        for line in (sample_data_dir() / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            t = json.loads(line).get("text", "")
            if t.strip():
                texts.append(t)
    return "\n".join(texts)


def fine_tune(loaded, steps: list[int], work: Path, lr: float, window: int, seed: int) -> dict[int, float]:
    """Full fine-tuning on the sample text; saves a checkpoint at every step count in ``steps``."""
    torch.manual_seed(seed)
    model, tok = loaded.model, loaded.tokenizer
    ids = tok(sample_text(), return_tensors="pt").input_ids[0]
    starts = list(range(0, len(ids) - window - 1, window // 2))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = {}
    t0 = time.perf_counter()
    for step in range(1, max(steps) + 1):
        s = starts[int(torch.randint(len(starts), (1,), generator=gen))]
        x = ids[s : s + window][None]
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step in steps:
            model.eval()
            folder = work / f"ft-{step}"
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            losses[step] = float(loss)
            print(f"step {step}: loss {float(loss):.3f}, {time.perf_counter() - t0:.0f} s -> {folder}", flush=True)
            model.train()
    model.eval()
    return losses


def gsm_arms(work: Path, steps: int) -> list[str]:
    """The three fine-tuning methods of ``achilles finetune`` on GSM-Symbolic, each a merged checkpoint."""
    data = work / "gsm"
    run(achilles("data", "gsm_symbolic", "--out", data))
    train = data / "gsm_symbolic_train.jsonl"
    common = ["--data", train, "--steps", steps, "--batch-size", 2, "--quiet"]
    run(achilles("finetune", "--neurons", "keystone", "--top-n", 64, "--lr", 3e-3, *common, "--out", work / "ks-delta"))
    run(achilles("export", "--delta", work / "ks-delta", "--out", work / "gsm-keystone"))
    run(achilles("finetune", "--method", "lora", "--lr", 1e-3, *common, "--out", work / "gsm-lora"))
    run(achilles("finetune", "--method", "full", "--lr", 1e-5, *common, "--out", work / "gsm-full"))
    return [str(work / f"gsm-{m}") for m in ("keystone", "lora", "full")]


def run(proc: subprocess.CompletedProcess) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"failed: {proc.args}\n{proc.stderr[-3000:]}")


def achilles(*argv) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lm_eval_achilles.cli", *map(str, argv)]
    print("$ achilles " + " ".join(map(str, argv)), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/achilles-track")
    ap.add_argument("--steps", default="25,50,100")
    ap.add_argument("--gsm-steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--window", type=int, default=128)
    args = ap.parse_args()
    from lm_eval_achilles.models.loading import load_model

    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    steps = [int(s) for s in args.steps.split(",")]
    t0 = time.perf_counter()
    base = load_model(None, dtype="float32", device="cpu")
    with torch.no_grad():
        base.model.model.layers[11].mlp.down_proj.weight[507].mul_(0.5)
    base.model.save_pretrained(work / "rescaled-0.5")
    base.tokenizer.save_pretrained(work / "rescaled-0.5")
    del base
    losses = fine_tune(load_model(None, dtype="float32", device="cpu"), steps, work, args.lr, args.window, seed=0)
    gsm = gsm_arms(work, args.gsm_steps)
    made = time.perf_counter() - t0

    ckpts = ["embedded", *[str(work / f"ft-{s}") for s in steps], str(work / "rescaled-0.5"), *gsm]
    t = time.perf_counter()
    r = achilles("track", *ckpts, "--out", out, "--overwrite", "--quiet")
    print(r.stdout[-4000:], r.stderr[-2000:])
    if r.returncode != 0:
        return r.returncode
    tracked = time.perf_counter() - t
    base_mask = out / "masks" / "01.json"
    checks = []
    for i, ck in enumerate(ckpts[1:], 2):
        name = Path(ck).name
        rc = achilles(
            "check", out / "masks" / f"{i:02d}.json", "--baseline", base_mask,
            "--max-size-drop", 0, "--max-delta-rise", 1.0, "--min-transfer-delta", 1.0, "--min-overlap", 0.5,
            "--model", ck, "--baseline-model", "embedded", "--junit", out / f"check-{name}.xml",
        )  # fmt: skip
        (out / f"check-{name}.txt").write_text(rc.stdout)
        checks.append({"checkpoint": name, "exit": rc.returncode, "output": rc.stdout.strip().splitlines()})
        print(rc.stdout, rc.stderr[-1000:])
    (out / "run.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/track_checkpoints.py " + " ".join(sys.argv[1:]),
                "fine_tune": {"lr": args.lr, "window": args.window, "batch": 1, "steps": steps, "final_losses": losses},
                "gsm_finetune": {
                    "steps": args.gsm_steps,
                    "batch": 2,
                    "lr": {"keystone": 3e-3, "lora": 1e-3, "full": 1e-5},
                },
                "seconds": {"make_copies": made, "track": tracked, "total": time.perf_counter() - t0},
                "checks": checks,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
