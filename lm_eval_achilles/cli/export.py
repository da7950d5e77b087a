"""``achilles export``: save the masked model with the mask folded into its weights, as a normal
Hugging Face checkpoint that any engine (transformers, vLLM with tensor parallelism, ...) can serve."""

from __future__ import annotations

from lm_eval_achilles.cli.common import add_model_arguments, finite_float, load_from_args, non_negative_int

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
    p.add_argument("--allow-fingerprint-mismatch", action="store_true")
    p.add_argument("--out", required=True, help="output folder")


def run(args) -> int:
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.harness.model_args import MaskingSpec
    from lm_eval_achilles.jsonio import write_json_atomic
    from lm_eval_achilles.mask.masking import fold
    from lm_eval_achilles.validate import check_output

    spec = MaskingSpec.from_args(
        mask=args.mask,
        top_n=args.top_n,
        select=args.select,
        scale=args.scale,
        allow_fingerprint_mismatch=args.allow_fingerprint_mismatch,
    )
    delta = _delta(args)
    out = check_output(args.out)
    if out.is_dir() and any(out.iterdir()):
        raise AchillesError(f"--out {out} exists and is not empty; give a new or empty folder")
    loaded = load_from_args(args)
    delta_info = delta.apply(loaded.model) if delta is not None else None  # the tuned weights, then the mask
    neurons = spec.resolve(loaded)
    fold(loaded.model, neurons, spec.scale)
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    provenance = {"exported_from": loaded.name_or_path, **spec.provenance(neurons), "apply": "fold"}
    if delta_info is not None:
        provenance["delta"] = delta_info
    write_json_atomic(out / "achilles-export.json", provenance)
    if delta_info is not None:
        print(f"merged the delta {args.delta} ({delta_info['n_neurons']} fine-tuned neuron(s)) into the weights")
    if neurons or delta_info is None:
        print(f"folded {len(neurons)} neuron(s) ({', '.join(sorted({n.module for n in neurons}))}) into the weights")
    print(f"wrote {out}  (load it with: lm_eval --model hf --model_args pretrained={out})")
    return 0


def _delta(args):
    from lm_eval_achilles.errors import AchillesError

    if args.delta is None:
        if args.mask is None:
            raise AchillesError("give --mask (a mask to fold) and/or --delta (a fine-tuned delta to merge)")
        return None
    from lm_eval_achilles.finetune.delta import load_delta

    return load_delta(args.delta)
