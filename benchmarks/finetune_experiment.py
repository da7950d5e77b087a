"""Does fine-tuning only the keystone neurons match full fine-tuning while preserving other abilities?

Arms (same data, same order, same steps, same loss, same loop - lm_eval_achilles.finetune.train):
  keystone   - rows of the keystone ranker's top-N channels (RowDelta)
  random_sK  - random channels, same count per module as keystone (seeds K)
  lora_r1    - LoRA r=1 on o_proj+down_proj via peft (about the keystone arm's trainable count)
  lora_r8    - LoRA r=8 on q_proj+v_proj (peft's usual choice)
  full       - every parameter
Target: answer NLL per token on GSM-Symbolic items of held-out templates (and of seen templates, new
seeds), greedy exact match on the first EM_ITEMS held-out items. Retention: NLL of the package's WikiText
and C4 samples and the locator's probe text, KL(base || tuned) per token on them, and the base's critical
set masked in the tuned model (does the Achilles' heel stay?). Paired by item against the base model.

    python benchmarks/finetune_experiment.py time                # seconds per step of every arm
    python benchmarks/finetune_experiment.py sweep --steps 20    # learning rate per family, on validation
    python benchmarks/finetune_experiment.py run --steps 100     # the arms; results/finetune/arms/*.json
    python benchmarks/finetune_experiment.py report              # table.md, results.json, plot.png

Every arm's result is written as soon as it finishes, so an interrupted run keeps what it did.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm_eval_achilles.finetune import baselines, data, delta, train  # noqa: E402
from lm_eval_achilles.finetune.neurons import keystone_neurons, matched_random, trainable_modules  # noqa: E402

OUT = ROOT / "results" / "finetune"
SIZES = {"train": 800, "validation": 32, "test_in": 64, "test_heldout": 64}
TOP_N = 64
EM_ITEMS = 16
MAX_NEW = 200
BATCH = 4
#: learning rates tried per family by `sweep` (chosen on validation answer NLL)
GRID = {"rows": [1e-3, 3e-3], "lora": [1e-3, 3e-3], "full": [1e-5, 3e-5]}
FAMILY = {"keystone": "rows", "random": "rows", "lora_r1": "lora", "lora_r8": "lora", "full": "full"}


def _load():
    from lm_eval_achilles.models.loading import load_model

    torch.set_num_threads(2)
    loaded = load_model(None, dtype="float32", device="cpu")
    baselines.freeze(loaded.model)
    return loaded


def _data():
    splits = data.gsm_symbolic(SIZES, seed=0)
    return {k: [data._example(d, k) for d in v] for k, v in splits.items()}, splits


def _retention_texts():
    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.resources import sample_data_dir

    texts = []
    for name in ("wikitext", "c4"):
        for line in (sample_data_dir() / f"{name}.jsonl").read_text().splitlines():
            t = json.loads(line)["text"]
            if len(t.strip()) > 40:
                texts.append((name, t))
    return texts + [("probe", PROBE_TEXT)]


def _arm_params(loaded, arm, neurons):
    """(model to train, its parameters, a finish() giving the evaluation model, a restore())."""
    model = loaded.model
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}

    def restore():
        baselines.freeze(model)
        model.load_state_dict(snapshot)

    if arm.startswith(("keystone", "random")):
        rows = delta.RowDelta(model, neurons)
        return model, list(rows.parameters()), rows, restore
    if arm.startswith("lora"):
        r, targets = (1, ("o_proj", "down_proj")) if arm == "lora_r1" else (8, ("q_proj", "v_proj"))
        peft_model, params = baselines.lora_model(model, r=r, targets=targets, seed=0)
        return peft_model, params, peft_model, restore
    return model, baselines.full_parameters(model), None, restore


def _train_arm(loaded, arm, neurons, examples, steps, lr, optimizer_out=None):
    model, params, handle, restore = _arm_params(loaded, arm, neurons)
    cfg = train.TrainConfig(steps=steps, lr=lr, batch_size=BATCH, seed=0, progress=False)
    t0 = time.perf_counter()
    if isinstance(handle, delta.RowDelta):
        with handle.attached():
            result = train.train(model, loaded.tokenizer, examples, params, cfg, optimizer_out)
        handle.merge()
    else:
        result = train.train(model, loaded.tokenizer, examples, params, cfg, optimizer_out)
        if handle is not None:
            baselines.lora_merge(handle)
    baselines.freeze(loaded.model)
    return result, sum(p.numel() for p in params), time.perf_counter() - t0, restore


def _neurons(loaded, arm, keystone):
    if arm == "keystone":
        return keystone
    if arm.startswith("random"):
        return matched_random(loaded.model, keystone, seed=int(arm.split("_s")[1]))
    return None


def keystone_record(loaded, keystone, modules):
    """The keystone arm's selection settings: prompts, generation length, the fraction rho at which at
    least TOP_N channels survive the intersection (as keystone_neurons doubles it), and the survivor count."""
    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.rankers import KEYSTONE_SELECTION_PROMPTS, generated_strengths, keystone_selection

    cfg = LocatorConfig()
    strengths, generations = generated_strengths(
        loaded.model, loaded.tokenizer, KEYSTONE_SELECTION_PROMPTS, modules, cfg.keystone_tokens
    )
    fraction, tried = cfg.keystone_fraction, []
    while True:
        survivors = sum(int((v > 0).sum()) for v in keystone_selection(strengths, fraction).values())
        tried.append([fraction, survivors])
        if survivors >= TOP_N or fraction >= 1:
            break
        fraction = min(1.0, fraction * 2)
    counts: dict[str, int] = {}
    for n in keystone:
        kind = n.module.rsplit(".", 1)[-1]
        counts[kind] = counts.get(kind, 0) + 1
    return {
        "ranker": "keystone",
        "prompts": KEYSTONE_SELECTION_PROMPTS,
        "generated_tokens": cfg.keystone_tokens,
        "fraction_tried_and_survivors": tried,
        "fraction": fraction,
        "survivors": tried[-1][1],
        "top_n": TOP_N,
        "per_module_kind": counts,
        "layers": sorted({int(n.module.split(".")[2]) for n in keystone}),
        "generations": generations,
    }


#: the base model's critical set (results/smollm2-135m-instruct/mask.json): one neuron
BASE_CRITICAL = [["model.layers.11.mlp.down_proj", 507]]


def locate_record(loaded):
    """The critical set of the model as it is now (default locator settings), and whether it is the base's."""
    from lm_eval_achilles.locator.locate import locate

    t0 = time.perf_counter()
    mask = locate(loaded, progress=False)
    neurons = [[n.module, n.channel] for n in mask.neurons]
    return {
        "size": mask.critical.size,
        "neurons": neurons,
        "delta": mask.critical.delta,
        "baseline_ppl": mask.critical.baseline_ppl,
        "masked_ppl": mask.critical.masked_ppl,
        "stopping_reason": mask.critical.stopping_reason,
        "same_as_base": neurons == BASE_CRITICAL,
        "seconds": time.perf_counter() - t0,
    }


def cmd_time(args):
    loaded = _load()
    examples, _ = _data()
    keystone = keystone_neurons(loaded, TOP_N, trainable_modules(loaded.model))
    out = {}
    for arm in ("keystone", "lora_r1", "lora_r8", "full"):
        result, n, secs, restore = _train_arm(loaded, arm, _neurons(loaded, arm, keystone), examples["train"], 4, 1e-5)
        restore()
        out[arm] = {"trainable": n, "s_per_step": secs / 4}
        print(arm, out[arm], flush=True)
    t0 = time.perf_counter()
    _exact_match(loaded, examples["test_heldout"][:8])
    out["em_8_items_s"] = time.perf_counter() - t0
    print(out, flush=True)
    _write(OUT / "timing.json", out)


#: items per split an arm is evaluated on (the base model: all of them); cut to fit the CPU budget
EVAL_ITEMS = {"test_heldout": 64, "test_in": 32}


def _evaluate(loaded, examples, texts, base_logp=None, em=True, splits=None):
    from lm_eval_achilles.locator.perplexity import mean_nll
    from lm_eval_achilles.mask.mask_file import load_mask
    from lm_eval_achilles.mask.masking import masked

    model = loaded.model
    res = {}
    for split in splits if splits is not None else ("test_heldout", "test_in", "validation"):
        items = (
            examples[split][: EVAL_ITEMS.get(split, len(examples[split]))] if splits is not None else examples[split]
        )
        pairs = train.answer_nll(model, loaded.tokenizer, items, batch_size=8)
        res[split] = [s / n for s, n in pairs]
    ret, kls, logps = [], [], []
    with torch.no_grad():
        for i, (_, t) in enumerate(texts):
            ids = loaded.tokenizer(t, return_tensors="pt").input_ids[:, :512]
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            ret.append(float(-logp.gather(-1, ids[0, 1:, None]).mean()))
            logps.append(logp.half())
            if base_logp is not None:
                b = base_logp[i].float()
                kls.append(float((b.exp() * (b - logp)).sum(-1).mean()))
    res["retention_nll"] = ret
    res["kl_from_base"] = kls
    mask = load_mask(ROOT / "results" / "smollm2-135m-instruct" / "mask.json")
    probe = loaded.tokenizer(texts[-1][1], return_tensors="pt").input_ids
    clean = float(mean_nll(model, probe)[0])
    with masked(model, mask.neurons):
        hit = float(mean_nll(model, probe)[0])
    res["critical_set"] = {
        "neurons": len(mask.neurons),
        "nll": clean,
        "masked_nll": hit,
        "delta": (hit - clean) / math.log(10),
    }
    if em:
        res["exact_match"] = _exact_match(loaded, examples["test_heldout"][:EM_ITEMS])
    return res, logps


def _final_number(text):
    import re

    tail = text.split("####")[-1] if "####" in text else text
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", tail)
    if not nums:
        return None
    try:
        return float(nums[-1 if "####" not in text else 0].replace(",", ""))
    except ValueError:
        return None


@torch.no_grad()
def _exact_match(loaded, examples, batch=16):
    tok, model = loaded.tokenizer, loaded.model
    out = []
    tok.padding_side = "left"
    try:
        for s in range(0, len(examples), batch):
            chunk = examples[s : s + batch]
            prompts = [
                tok.apply_chat_template(
                    [{"role": r, "content": c} for r, c in e.messages], add_generation_prompt=True, tokenize=False
                )
                for e in chunk
            ]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            gen = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tok.pad_token_id)
            for e, g in zip(chunk, gen[:, enc.input_ids.shape[1] :]):
                text = tok.decode(g, skip_special_tokens=True)
                got = _final_number(text)
                out.append(int(got is not None and abs(got - float(e.final)) < 1e-6))
    finally:
        tok.padding_side = "right"
    return out


def _write(path, obj):
    from lm_eval_achilles.jsonio import write_json_atomic

    write_json_atomic(path, obj)


def cmd_sweep(args):
    loaded = _load()
    examples, _ = _data()
    keystone = keystone_neurons(loaded, TOP_N, trainable_modules(loaded.model))
    out = {}
    path = OUT / "sweep.json"
    if path.exists():
        out = json.loads(path.read_text())
    for arm, family in (("keystone", "rows"), ("lora_r1", "lora"), ("full", "full")):
        for lr in GRID[family]:
            key = f"{arm}@{lr:g}"
            if key in out:
                continue
            result, n, secs, restore = _train_arm(
                loaded, arm, _neurons(loaded, arm, keystone), examples["train"], args.steps, lr
            )
            pairs = train.answer_nll(loaded.model, loaded.tokenizer, examples["validation"], batch_size=8)
            restore()
            out[key] = {
                "arm": arm,
                "lr": lr,
                "steps": args.steps,
                "val_nll": sum(s for s, _ in pairs) / sum(n for _, n in pairs),
                "final_loss": result.final_loss,
                "seconds": secs,
            }
            print(key, out[key], flush=True)
            _write(path, out)
    best = {}
    for v in out.values():
        fam = FAMILY[v["arm"]]
        if fam not in best or v["val_nll"] < best[fam]["val_nll"]:
            best[fam] = v
    out["_chosen"] = {f: v["lr"] for f, v in best.items()}
    print("chosen", out["_chosen"])
    _write(path, out)


def cmd_run(args):
    loaded = _load()
    examples, splits = _data()
    texts = _retention_texts()
    arms_dir = OUT / "arms"
    chosen = json.loads((OUT / "sweep.json").read_text())["_chosen"]
    t0 = time.perf_counter()
    modules = trainable_modules(loaded.model)
    keystone = keystone_neurons(loaded, TOP_N, modules)
    selection = keystone_record(loaded, keystone, modules)
    print("keystone", selection["fraction"], selection["survivors"], selection["per_module_kind"], flush=True)
    _write(OUT / "keystone_selection.json", {**selection, "neurons": [[x.module, x.channel] for x in keystone]})
    base_path = arms_dir / "base.json"
    if base_path.exists():  # the retention texts are evaluated again (the KL needs their log-probs)
        res, base_logp = _evaluate(loaded, examples, texts, em=False, splits=())
        record = json.loads(base_path.read_text())
        if record["retention_nll"] != res["retention_nll"]:  # the package's sample text changed since
            print("base retention NLL refreshed:", record["retention_nll"], "->", res["retention_nll"], flush=True)
            record.update(retention_nll=res["retention_nll"], critical_set=res["critical_set"])
            _write(base_path, record)
    else:
        res, base_logp = _evaluate(loaded, examples, texts)
        _write(base_path, {"arm": "base", **res, "eval_seconds": time.perf_counter() - t0})
    if args.locate and "located" not in json.loads(base_path.read_text()):
        record = json.loads(base_path.read_text())
        record["located"] = locate_record(loaded)
        _write(base_path, record)
    seeds = [f"random_s{s}" for s in range(args.random_seeds)]
    arms = ["keystone", *seeds[:1], "full", "lora_r1", *seeds[1:], "lora_r8"]  # most important first
    arms = [a for a in arms if not args.arms or a in args.arms]
    trained = []
    for arm in arms:
        path = arms_dir / f"{arm}.json"
        if path.exists():
            continue
        trained.append(arm)
        family = FAMILY[arm.split("_s")[0] if arm.startswith("random") else arm]
        neurons = _neurons(loaded, arm, keystone)
        opt: list = []
        result, n, secs, restore = _train_arm(loaded, arm, neurons, examples["train"], args.steps, chosen[family], opt)
        state = sum(t.numel() for st in opt[0].state.values() for t in st.values() if t.dim() > 0)
        t1 = time.perf_counter()
        res, _ = _evaluate(loaded, examples, texts, base_logp, em=args.em, splits=tuple(EVAL_ITEMS))
        if args.locate:
            res["located"] = locate_record(loaded)
        restore()
        record = {
            "arm": arm,
            "lr": chosen[family],
            "steps": args.steps,
            "batch_size": BATCH,
            "trainable": n,
            "optimizer_state": state,
            "train_seconds": secs,
            "eval_seconds": time.perf_counter() - t1,
            "losses": result.losses,
            "final_loss": result.final_loss,
            "neurons": [[x.module, x.channel] for x in neurons] if neurons else None,
            **res,
        }
        _write(path, record)
        print(
            arm, f"train {secs:.0f}s", f"heldout {sum(res['test_heldout']) / len(res['test_heldout']):.4f}", flush=True
        )
    if not trained:  # nothing ran in this call: keep the meta of the run that trained the arms
        return
    old = json.loads((OUT / "run_meta.json").read_text()) if (OUT / "run_meta.json").exists() else {}
    runs = old.get("runs") or (
        [{"arms": "earlier run", "seconds": old["total_seconds"]}] if "total_seconds" in old else []
    )
    meta = {
        "sizes": SIZES,
        "top_n": TOP_N,
        "em_items": EM_ITEMS,
        "max_new_tokens": MAX_NEW,
        "lr": chosen,
        "keystone": [[x.module, x.channel] for x in keystone],
        "keystone_selection": {k: v for k, v in selection.items() if k != "generations"},
        "retention_texts": [k for k, _ in texts],
        "templates": {k: sorted({d["template"] for d in v}) for k, v in splits.items()},
        "runs": [*runs, {"arms": trained, "steps": args.steps, "seconds": time.perf_counter() - t0}],  # one per call
        "torch_threads": torch.get_num_threads(),
    }
    _write(OUT / "run_meta.json", meta)


def cmd_report(args):
    from lm_eval_achilles.comparison.stats import paired_bootstrap
    from lm_eval_achilles.plotting import pyplot, save_figure

    arms = {p.stem: json.loads(p.read_text()) for p in sorted((OUT / "arms").glob("*.json"))}
    base = arms.pop("base")
    order = [a for a in ["keystone", "random_s0", "random_s1", "random_s2", "lora_r1", "lora_r8", "full"] if a in arms]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    rows, summary = [], {}
    for a in ["base", *order]:
        r = base if a == "base" else arms[a]
        row = {
            "arm": a,
            "trainable": r.get("trainable", 0),
            "lr": r.get("lr"),
            "s_per_step": (r["train_seconds"] / r["steps"]) if a != "base" else None,
        }
        for k in ("test_heldout", "test_in"):
            n = len(arms[order[0]][k]) if order else len(r[k])  # the items every arm was evaluated on
            row[k] = mean(r[k][:n])
            if a != "base":
                t = paired_bootstrap(base[k][:n], r[k][:n], iters=5000, seed=0)
                row[k + "_ci"] = [t.ci_low, t.ci_high]
        row["retention_nll"] = mean(r["retention_nll"])
        if a != "base":
            t = paired_bootstrap(base["retention_nll"], r["retention_nll"], iters=5000, seed=0)
            row["retention_ci"] = [t.ci_low, t.ci_high]
            row["kl"] = mean(r["kl_from_base"])
        row["em"] = f"{sum(r['exact_match'])}/{len(r['exact_match'])}" if "exact_match" in r else "–"
        row["critical_delta"] = r["critical_set"]["delta"]
        rows.append(row)
        summary[a] = row

    def ci(v):
        return f" [{v[0]:+.3f}, {v[1]:+.3f}]" if v else ""

    lines = [
        "| arm | trainable values | lr | s/step | held-out templates NLL (Δ vs base, 95% CI) | seen templates NLL (Δ, CI) "
        "| WikiText+C4+probe NLL (Δ, CI) | KL from base | exact match (held-out) | base critical set Δ |",
        "|---|--:|--:|--:|---|---|---|--:|--:|--:|",
    ]
    b = summary["base"]
    for r in rows:
        cells = [r["arm"], f"{r['trainable']:,}", f"{r['lr']:g}" if r["lr"] else "–"]
        cells.append(f"{r['s_per_step']:.2f}" if r["s_per_step"] else "–")
        for k, cik in (
            ("test_heldout", "test_heldout_ci"),
            ("test_in", "test_in_ci"),
            ("retention_nll", "retention_ci"),
        ):
            cell = f"{r[k]:.4f}"
            if r["arm"] != "base":
                cell += f" ({r[k] - b[k]:+.4f}{ci(r.get(cik))})"
            cells.append(cell)
        cells += [f"{r['kl']:.4f}" if "kl" in r else "–", r["em"], f"{r['critical_delta']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    # keystone against each random control, paired by item (same items, same base)
    versus = {}
    if "keystone" in arms:
        lines += [
            "",
            "| keystone − control, paired by item | held-out NLL (95% CI) | WikiText+C4+probe NLL (95% CI) "
            "| KL from base (95% CI) | documents where keystone's KL is larger |",
            "|---|---|---|---|--:|",
        ]
        for a in order:
            if a == "keystone":
                continue
            n = len(arms[a]["test_heldout"])
            tests = {
                k: paired_bootstrap(arms[a][k][:n], arms["keystone"][k][:n], iters=5000, seed=0)
                for k in ("test_heldout", "retention_nll", "kl_from_base")
            }
            kk, ka = arms["keystone"]["kl_from_base"], arms[a]["kl_from_base"]
            larger = sum(x > y for x, y in zip(kk, ka))
            versus[a] = {k: [t.extra["difference"], t.ci_low, t.ci_high] for k, t in tests.items()}
            versus[a]["kl_larger_documents"] = [larger, len(kk)]
            cells = [f"{t.extra['difference']:+.4f} [{t.ci_low:+.4f}, {t.ci_high:+.4f}]" for t in tests.values()]
            lines.append(f"| keystone − {a} | " + " | ".join(cells) + f" | {larger}/{len(kk)} |")
    located = {a: (base if a == "base" else arms[a]).get("located") for a in ["base", *order]}
    located = {a: v for a, v in located.items() if v}
    if located:
        lines += [
            "",
            "| model | its own critical set: size | neurons | Δ (log10 PPL ratio) | PPL clean → masked "
            "| the base's neuron? | locate seconds |",
            "|---|--:|---|--:|---|---|--:|",
        ]
        for a, v in located.items():
            names = ", ".join(f"{m.removeprefix('model.')}:{c}" for m, c in v["neurons"][:4])
            names += f" (+{len(v['neurons']) - 4} more)" if len(v["neurons"]) > 4 else ""
            lines.append(
                f"| {a} | {v['size']} | {names} | {v['delta']:.2f} | {v['baseline_ppl']:.1f} → {v['masked_ppl']:.3g} "
                f"| {'yes' if v['same_as_base'] else 'no'} | {v['seconds']:.0f} |"
            )
    (OUT / "table.md").write_text("\n".join(lines) + "\n")
    _write(OUT / "results.json", {"rows": rows, "keystone_vs": versus, "located": located})
    print("\n".join(lines))

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"keystone": "C3", "lora_r1": "C0", "lora_r8": "C9", "full": "C2"}
    for a in order:
        r = summary[a]
        gain = summary["base"]["test_heldout"] - r["test_heldout"]
        drift = r["retention_nll"] - summary["base"]["retention_nll"]
        ax1.scatter(drift, gain, color=colors.get(a, "C7"), s=50, label=a)
        ax1.annotate(a, (drift, gain), textcoords="offset points", xytext=(4, 4), fontsize=8)
        losses = arms[a]["losses"]
        k = max(1, len(losses) // 20)
        smooth = [mean(losses[max(0, i - k) : i + 1]) for i in range(len(losses))]
        ax2.plot(range(1, len(losses) + 1), smooth, color=colors.get(a, "C7"), label=a, lw=1.2)
    ax1.axhline(0, color="k", lw=0.5)
    ax1.axvline(0, color="k", lw=0.5)
    ax1.set_xlabel("retention drift: Δ NLL on WikiText/C4/probe (left = kept)")
    ax1.set_ylabel("target gain: Δ held-out answer NLL (base − tuned)")
    ax1.set_title("gain vs drift (SmolLM2-135M, GSM-Symbolic)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss (answer NLL/token, running mean)")
    ax2.set_title("training loss")
    ax2.legend(fontsize=8)
    save_figure(fig, OUT / "plot.png")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("time")
    s = sub.add_parser("sweep")
    s.add_argument("--steps", type=int, default=20)
    r = sub.add_parser("run")
    r.add_argument("--steps", type=int, default=100)
    r.add_argument("--random-seeds", type=int, default=3)
    r.add_argument("--em", action="store_true", help="greedy exact match for every arm too (slow on CPU)")
    r.add_argument("--locate", action="store_true", help="locate each tuned model's critical set (default settings)")
    r.add_argument("--arms", nargs="*", help="only these arms (default: all, most important first)")
    sub.add_parser("report")
    args = p.parse_args()
    {"time": cmd_time, "sweep": cmd_sweep, "run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
