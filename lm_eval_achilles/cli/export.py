"""``achilles export``: save the masked model with the mask folded into its weights, as a normal
Hugging Face checkpoint that any engine (transformers 4.x and 5.x, vLLM with tensor parallelism, ...)
can serve: the source's own configuration and tokenizer files (made readable by transformers 4.x where
transformers 5 wrote them, :mod:`lm_eval_achilles.mask.export`) plus the folded weights."""

from __future__ import annotations

from lm_eval_achilles.cli.common import (
    add_model_arguments,
    finite_float,
    load_from_args,
    model_of_mask,
    non_negative_int,
)

HELP = "save the masked (folded) model as a normal Hugging Face checkpoint"


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--mask", default=None, help="mask file (achilles-mask/1)")
    p.add_argument("--delta", default=None, help="an achilles finetune result to merge first (docs/finetune.md)")
    p.add_argument(
        "--top-n",
        type=non_negative_int,
        default=None,
        help="fold the first N ranked neurons instead of the critical set",
    )
    p.add_argument(
        "--select",
        default="critical",
        choices=["critical", "minimal"],
        help="fold the paper's critical set or the minimal set of `locate --minimize`",
    )
    p.add_argument("--scale", type=finite_float, default=0.0, help="masked channels are multiplied by this (beta)")
    p.add_argument(
        "--allow-fingerprint-mismatch", action="store_true", help="use a mask made for another architecture (warns)"
    )
    p.add_argument(
        "--max-shard-size",
        default="5GB",
        help="largest safetensors shard written (transformers' notation: 5GB, 500MB; default 5GB)",
    )
    p.add_argument(
        "--format",
        default="hf",
        choices=["hf", "gguf"],
        help="hf: a Hugging Face checkpoint (default); gguf: the source GGUF file (--gguf-file, or the named "
        "model's) with the mask folded into its tensors, for llama.cpp / Ollama",
    )
    p.add_argument(
        "--streaming",
        action="store_true",
        help="for models too large to load: patch the masked rows inside the source's safetensors shards "
        "(local folder; memory of one shard; source dtypes and sharding kept)",
    )
    p.add_argument("--out", required=True, help="output folder")


def run(args) -> int:
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.harness.model_args import MaskingSpec
    from lm_eval_achilles.jsonio import write_json_atomic
    from lm_eval_achilles.mask.export import copy_source_files, make_readable, set_config_dtype
    from lm_eval_achilles.mask.masking import fold
    from lm_eval_achilles.models.loading import gguf_file_path, resolve_pretrained, without_gguf_quantizer
    from lm_eval_achilles.validate import check_output

    spec = MaskingSpec.from_args(
        mask=args.mask,
        top_n=args.top_n,
        select=args.select,
        scale=args.scale,
        allow_fingerprint_mismatch=args.allow_fingerprint_mismatch,
    )
    delta = _delta(args)
    if spec.mask_file is not None:
        model_of_mask(args, spec.mask_file, "exporting")
    out = check_output(args.out)
    if out.is_dir() and any(out.iterdir()):
        raise AchillesError(f"--out {out} exists and is not empty; give a new or empty folder")
    if args.gguf_file:
        gguf_file_path(args.model, args.gguf_file)
    if delta is not None and (args.format == "gguf" or args.streaming):
        raise AchillesError("--delta merges into a loaded model: use it without --format gguf and --streaming")
    if args.format == "gguf":
        return _run_gguf(args, spec, out)
    if args.streaming:
        return _run_streaming(args, spec, out)
    loaded = load_from_args(args)
    delta_info = delta.apply(loaded.model) if delta is not None else None  # the tuned weights, then the mask
    neurons = spec.resolve(loaded)
    model = without_gguf_quantizer(loaded.model)
    fold(model, neurons, spec.scale)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size=args.max_shard_size)
    # a GGUF source has no configuration files of its own: transformers writes them (made portable)
    if not copy_source_files(None if args.gguf_file else resolve_pretrained(args.model), out):
        loaded.tokenizer.save_pretrained(out)
        copy_source_files(None, out)
    set_config_dtype(out, str(model.dtype).removeprefix("torch."))
    provenance = {"exported_from": loaded.name_or_path, **spec.provenance(neurons), "apply": "fold"}
    if delta_info is not None:
        provenance["delta"] = delta_info
    write_json_atomic(out / "achilles-export.json", provenance)
    make_readable(out)
    if delta_info is not None:
        print(f"merged the delta {args.delta} ({delta_info['n_neurons']} fine-tuned neuron(s)) into the weights")
    if neurons or delta_info is None:
        print(f"folded {len(neurons)} neuron(s) ({', '.join(sorted({n.module for n in neurons}))}) into the weights")
    print(f"wrote {out}  (load it with: lm_eval --model hf --model_args pretrained={out})")
    return 0


def _run_streaming(args, spec, out) -> int:
    from pathlib import Path

    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.jsonio import write_json_atomic
    from lm_eval_achilles.mask.export import _weight_files, copy_source_files, make_readable, stream_export
    from lm_eval_achilles.models.loading import load_skeleton, resolve_pretrained

    if args.gguf_file:
        raise AchillesError("--streaming reads safetensors shards; it cannot export from --gguf-file")
    if args.dtype != "auto":
        raise AchillesError("--streaming keeps the checkpoint's dtype; drop --dtype")
    folder = Path(resolve_pretrained(args.model))
    if not folder.is_dir():
        raise AchillesError(f"--streaming needs a local checkpoint folder; {args.model!r} is not one")
    _weight_files(folder)  # a folder without safetensors shards fails now
    skeleton = load_skeleton(args.model, trust_remote_code=args.trust_remote_code)
    if skeleton is None:
        raise AchillesError("--streaming: this model class cannot be built without weights; export without it")
    spec.precheck(skeleton)
    neurons = spec._selected(skeleton)
    out.mkdir(parents=True, exist_ok=True)
    patched = stream_export(skeleton, folder, out, neurons, spec.scale)
    copy_source_files(str(folder), out)
    provenance = {"exported_from": args.model or "embedded", **spec.provenance(neurons), "apply": "fold"}
    write_json_atomic(out / "achilles-export.json", {**provenance, "streaming": True, "patched_shards": patched})
    make_readable(out)
    print(f"folded {len(neurons)} neuron(s) into {len(patched)} shard(s) ({', '.join(patched)}); others copied")
    print(f"wrote {out}  (load it with: lm_eval --model hf --model_args pretrained={out})")
    return 0


def _run_gguf(args, spec, out) -> int:
    from pathlib import Path

    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.jsonio import write_json_atomic
    from lm_eval_achilles.mask.export import make_readable
    from lm_eval_achilles.mask.gguf_export import gguf_export
    from lm_eval_achilles.models.loading import gguf_file_path, load_skeleton
    from lm_eval_achilles.models.named import gguf_path, lookup

    if args.streaming:
        raise AchillesError("--streaming applies to --format hf; a GGUF export never loads the model")
    if args.gguf_file:
        source = gguf_file_path(args.model, args.gguf_file)
        if source is None:
            raise AchillesError("--format gguf needs a local GGUF file (a folder --model with --gguf-file)")
    elif lookup(args.model) is not None:
        source = gguf_path(lookup(args.model))
    else:
        raise AchillesError("--format gguf needs a GGUF source: --gguf-file, or a named model (embedded, ...)")
    skeleton = load_skeleton(str(source.parent), gguf_file=source.name)
    if skeleton is None:
        raise AchillesError("--format gguf: this model class cannot be built without weights")
    spec.precheck(skeleton)
    neurons = spec._selected(skeleton)
    changed = gguf_export(Path(source), out / source.name, skeleton, neurons, spec.scale)
    provenance = {"exported_from": str(source), **spec.provenance(neurons), "apply": "fold", "format": "gguf"}
    write_json_atomic(out / "achilles-export.json", {**provenance, "gguf_tensors_changed": changed})
    make_readable(out)
    print(f"folded {len(neurons)} neuron(s) into {len(changed)} GGUF tensor(s); wrote {out / source.name}")
    return 0


def _delta(args):
    from lm_eval_achilles.errors import AchillesError

    if args.delta is None:
        if args.mask is None:
            raise AchillesError("give --mask (a mask to fold) and/or --delta (a fine-tuned delta to merge)")
        return None
    from lm_eval_achilles.finetune.delta import load_delta

    return load_delta(args.delta)
