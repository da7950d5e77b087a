"""``achilles export``: save the masked model with the mask folded into its weights, as a normal
Hugging Face checkpoint that any engine (transformers 4.x and 5.x, vLLM with tensor parallelism, ...)
can serve: the source's own configuration and tokenizer files (made readable by transformers 4.x where
transformers 5 wrote them, :mod:`lm_eval_achilles.mask.export`) plus the folded weights."""

from __future__ import annotations

from lm_eval_achilles.cli.common import add_model_arguments, finite_float, load_from_args, non_negative_int

HELP = "save the masked (folded) model as a normal Hugging Face checkpoint"


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--mask", required=True, help="mask file (achilles-mask/1)")
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
    p.add_argument("--allow-fingerprint-mismatch", action="store_true")
    p.add_argument(
        "--max-shard-size",
        default="5GB",
        help="largest safetensors shard written (transformers' notation: 5GB, 500MB; default 5GB)",
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
    out = check_output(args.out)
    if out.is_dir() and any(out.iterdir()):
        raise AchillesError(f"--out {out} exists and is not empty; give a new or empty folder")
    if args.gguf_file:
        gguf_file_path(args.model, args.gguf_file)
    loaded = load_from_args(args)
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
    write_json_atomic(out / "achilles-export.json", provenance)
    make_readable(out)
    print(f"folded {len(neurons)} neuron(s) ({', '.join(sorted({n.module for n in neurons}))}) into the weights")
    print(f"wrote {out}  (load it with: lm_eval --model hf --model_args pretrained={out})")
    return 0
