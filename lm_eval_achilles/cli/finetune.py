"""``achilles finetune``: supervised fine-tuning of only the selected neurons' own weight slices
(docs/finetune.md). Writes an ``achilles-delta/1`` folder; ``--method lora|full`` train the baselines
with the same loop and write a merged Hugging Face checkpoint instead."""

from __future__ import annotations

from lm_eval_achilles.cli.common import (
    add_model_arguments,
    add_overwrite_argument,
    load_from_args,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

HELP = "fine-tune only the selected neurons' weights (or LoRA / full baselines) on prompt/answer data"
METHODS = ("rows", "lora", "full")


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument(
        "--neurons",
        default="keystone",
        help="keystone (the keystone ranker's top N), random (N random channels), critical / minimal "
        "(the set of --mask), or FILE (a mask file or a JSON list of [module, channel] pairs)",
    )
    p.add_argument("--top-n", type=positive_int, default=None, help="how many neurons (keystone/random: default 64)")
    p.add_argument("--mask", default=None, help="mask file for --neurons critical/minimal")
    p.add_argument("--modules", default=None, help="candidate modules for keystone/random (globs or re:REGEX)")
    p.add_argument("--data", required=True, help="JSONL of prompt/answer pairs or chat messages (achilles data)")
    p.add_argument("--steps", type=positive_int, required=True, help="optimizer steps")
    p.add_argument("--lr", type=positive_float, required=True, help="peak learning rate (warm-up, then cosine)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="sequences per micro-batch")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per optimizer step")
    p.add_argument(
        "--weight-decay", type=non_negative_float, default=0.0, help="AdamW weight decay (only on the trained values)"
    )
    p.add_argument("--max-length", type=positive_int, default=512, help="tokens per sequence (longer are cut)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="data order, random neurons, LoRA init")
    p.add_argument("--method", choices=METHODS, default="rows", help="rows = the selected neurons only")
    p.add_argument("--lora-r", type=positive_int, default=8, help="LoRA rank (--method lora)")
    p.add_argument("--lora-targets", default="q_proj,v_proj", help="module names LoRA adapts")
    p.add_argument("--out", required=True, help="output folder (the delta, or a checkpoint for lora/full)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_overwrite_argument(p)


def run(args) -> int:
    from lm_eval_achilles.finetune import data, delta
    from lm_eval_achilles.finetune.train import TrainConfig
    from lm_eval_achilles.validate import check_output

    results = delta.RESULTS if args.method == "rows" else ("config.json", "achilles-finetune.json")
    out = check_output(args.out, "folder", results=results, overwrite=args.overwrite)
    examples = data.read_jsonl(args.data)
    cfg = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        weight_decay=args.weight_decay,
        max_length=args.max_length,
        seed=args.seed,
        progress=not args.quiet,
    )
    request = _neuron_request(args) if args.method == "rows" else None
    loaded = load_from_args(args)
    info = {
        "data": {"path": str(args.data), "sha256": data.file_sha256(args.data), "examples": len(examples)},
        "settings": cfg.to_json(),
    }
    if args.method == "rows":
        return _run_rows(args, loaded, examples, cfg, request, out, info)
    return _run_baseline(args, loaded, examples, cfg, out, info)


def _neuron_request(args):
    """What --neurons asks for, checked before the model loads (files read, names checked on the skeleton)."""
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.finetune.neurons import CHOICES, owned_slices, read_neuron_file
    from lm_eval_achilles.models.loading import fingerprint, load_skeleton

    how = args.neurons
    if how in ("critical", "minimal"):
        if not args.mask:
            raise AchillesError(f"--neurons {how} needs --mask FILE (a mask file from achilles locate)")
        neurons, mask = read_neuron_file(args.mask, args.top_n if how == "critical" else None, how)
    elif how in CHOICES:
        if args.mask:
            raise AchillesError(f"--mask applies to --neurons critical/minimal, not {how}")
        neurons, mask = None, None
    else:
        neurons, mask = read_neuron_file(how, args.top_n)
    skeleton = load_skeleton(args.model, gguf_file=args.gguf_file, trust_remote_code=args.trust_remote_code)
    if skeleton is not None:
        if mask is not None:
            from lm_eval_achilles.mask.mask_file import check_fingerprint

            check_fingerprint(mask, fingerprint(skeleton))
        if neurons is not None:
            owned_slices(skeleton, neurons)
        else:
            from lm_eval_achilles.finetune.neurons import trainable_modules

            trainable_modules(skeleton, args.modules)
    return neurons


def _run_rows(args, loaded, examples, cfg, neurons, out, info) -> int:
    from lm_eval_achilles.finetune import baselines, delta
    from lm_eval_achilles.finetune.neurons import keystone_neurons, random_neurons, trainable_modules
    from lm_eval_achilles.finetune.train import train
    from lm_eval_achilles.models.loading import weights_digest

    model = loaded.model
    info["base_weights_digest"] = weights_digest(model)
    if neurons is None:
        top_n = args.top_n or 64
        modules = trainable_modules(model, args.modules)
        if args.neurons == "keystone":
            neurons = keystone_neurons(loaded, top_n, modules)
        else:
            neurons = random_neurons(model, top_n, modules, args.seed)
    baselines.freeze(model)
    rows = delta.RowDelta(model, neurons)
    print(f"training {len(neurons)} neuron(s): {rows.trainable_count():,} values in {len(rows.slices)} slice(s)")
    with rows.attached():
        result = train(model, loaded.tokenizer, examples, rows.parameters(), cfg)
    info.update(
        selection={"neurons": args.neurons, "top_n": args.top_n, "mask": args.mask, "modules": args.modules},
        steps=cfg.steps,
        final_loss=result.final_loss,
        losses=result.losses,
        seconds=round(result.seconds, 2),
    )
    delta.save_delta(out, rows, loaded, info)
    print(f"final loss {result.final_loss:.4f} after {cfg.steps} steps ({result.seconds:.0f} s)")
    print(f"wrote {out}  (evaluate: lm_eval --model achilles_masked --model_args delta={out} ...)")
    return 0


def _run_baseline(args, loaded, examples, cfg, out, info) -> int:
    from lm_eval_achilles.finetune import baselines
    from lm_eval_achilles.finetune.train import train
    from lm_eval_achilles.jsonio import write_json_atomic

    model = loaded.model
    if args.method == "full":
        params = baselines.full_parameters(model)
        result = train(model, loaded.tokenizer, examples, params, cfg)
        baselines.freeze(model)
    else:
        baselines.freeze(model)
        targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
        peft_model, params = baselines.lora_model(model, args.lora_r, targets=targets, seed=args.seed)
        result = train(peft_model, loaded.tokenizer, examples, params, cfg)
        model = baselines.lora_merge(peft_model)
    model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    info.update(
        method=args.method,
        base=loaded.name_or_path,
        trainable_values=sum(p.numel() for p in params),
        lora={"r": args.lora_r, "targets": args.lora_targets} if args.method == "lora" else None,
        final_loss=result.final_loss,
        losses=result.losses,
        seconds=round(result.seconds, 2),
    )
    write_json_atomic(out / "achilles-finetune.json", info)
    print(f"final loss {result.final_loss:.4f} after {cfg.steps} steps; wrote {out} (a merged checkpoint)")
    return 0
