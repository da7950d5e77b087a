"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="hub id or local path (default: the embedded SmolLM2-135M-Instruct)")
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
    from pathlib import Path

    from lm_eval_achilles.defaults import PROBE_TEXT
    from lm_eval_achilles.errors import AchillesError

    path = getattr(args, file_attr, None)
    if path:
        p = Path(path)
        if not p.is_file():
            raise AchillesError(f"text file not found: {p}")
        return p.read_text()
    text = getattr(args, text_attr, None)
    return PROBE_TEXT if text is None else text
