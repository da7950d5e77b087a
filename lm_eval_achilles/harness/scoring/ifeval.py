"""IFEval protocol (paper appendix A.3; docs/protocols.md, "achilles_ifeval"): lm-eval's official instruction checkers,
strict mode only, behind the standard quality filter.

The reference code used home-made checkers (with known bugs, see docs/protocols.md); this project uses
the official registry shipped with lm-eval (``lm_eval.tasks.ifeval.instructions_registry``) so that
the numbers mean what IFEval numbers usually mean -- except that a response failing the standard
quality filter follows no instruction, as the paper specifies.

Offline hazard: importing lm-eval's ``instructions_util`` calls
``nltk.download("punkt_tab")``, and the sentence-count and capital-word checkers need that resource.
When ``punkt_tab`` is not installed, this module skips the download attempt (no network access from a
scoring function) and gives the checkers a parameter-free ``PunktSentenceTokenizer()``, which needs
no data files. :func:`sentence_splitter` says which one is in use. Install the real one with
``python -m nltk.downloader punkt_tab`` to get exactly the official behaviour.

All of this happens in a private copy of lm-eval's checker modules (:func:`_load_private_checkers`),
and langdetect is seeded only while a check runs: lm-eval's own ``ifeval`` task in the same process
is left exactly as it would be without this package.

The copy depends on lm-eval's private layout (three files in ``lm_eval/tasks/ifeval/`` and a few of
their attributes), so it is guarded: an lm-eval outside :data:`LM_EVAL_SUPPORTED`, a missing file or a
missing attribute is an :class:`IFEvalLayoutError` naming what is missing and the supported range --
never a silently different checker.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.scoring.quality import is_meaningful

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def _punkt_tab_installed() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
        return True
    except LookupError:
        return False


class _NltkWithOfflineWordTokenize:
    """Stands in for the ``nltk`` module inside this package's copy of ``instructions_util`` only:
    everything is the real module except ``word_tokenize``, which splits sentences with an untrained
    Punkt model."""

    def __init__(self, real, word_tokenize):
        self._real = real
        self.word_tokenize = word_tokenize

    def __getattr__(self, name):
        return getattr(self._real, name)


def _install_offline_tokenizers(util) -> None:
    import nltk
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    splitter = PunktSentenceTokenizer()
    words = NLTKWordTokenizer()

    def word_tokenize(text: str, language: str = "english", preserve_line: bool = False) -> list[str]:
        # same structure as nltk.word_tokenize: sentences first, then Treebank-style words
        sentences = [text] if preserve_line else splitter.tokenize(text)
        return [tok for sent in sentences for tok in words.tokenize(sent)]

    util._get_sentence_tokenizer = lambda: splitter
    util.nltk = _NltkWithOfflineWordTokenize(nltk, word_tokenize)


_MODULES = ("instructions_util", "instructions", "instructions_registry")  # in import order
_PRIVATE_PREFIX = "lm_eval_achilles._lm_eval_ifeval."
#: the lm-eval releases whose IFEval modules this file is written for (the package's own lm-eval requirement)
LM_EVAL_SUPPORTED = ">=0.4.10,<0.6"
_LOWEST, _BEYOND = (0, 4, 10), (0, 6)
#: what this package uses from each private copy (besides the checker classes the registry names)
EXPECTED_ATTRIBUTES = {
    "instructions_util": ("nltk", "_get_sentence_tokenizer"),
    "instructions": (),
    "instructions_registry": ("INSTRUCTION_DICT",),
}


class IFEvalLayoutError(AchillesError):
    """The installed lm-eval's IFEval modules are not the ones ``achilles_ifeval`` is written for."""


def _release(version: str) -> tuple[int, ...]:
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not found:
        raise IFEvalLayoutError(f"achilles_ifeval: cannot read lm-eval's version {version!r}")
    return tuple(int(x) for x in found.groups(default="0"))


def check_layout(version: str, folder: Path) -> None:
    """Raise :class:`IFEvalLayoutError` unless ``version`` is in :data:`LM_EVAL_SUPPORTED` and ``folder``
    holds the three checker modules."""
    where = f"lm-eval {version} ({folder})"
    if not _LOWEST <= _release(version) < _BEYOND:
        raise IFEvalLayoutError(
            f"achilles_ifeval runs lm-eval's IFEval checkers and supports lm-eval {LM_EVAL_SUPPORTED}; "
            f"installed: lm-eval {version}. Install a supported lm-eval"
        )
    missing = [f"{name}.py" for name in _MODULES if not (folder / f"{name}.py").is_file()]
    if missing:
        raise IFEvalLayoutError(
            f"achilles_ifeval: {where} has no {', '.join(missing)} in lm_eval/tasks/ifeval/; "
            f"supported: lm-eval {LM_EVAL_SUPPORTED}"
        )


def _check_attributes(copies: Mapping[str, Any], where: str) -> None:
    missing = [
        f"{name}.{attr}"
        for name, attrs in EXPECTED_ATTRIBUTES.items()
        for attr in attrs
        if not hasattr(copies[name], attr)
    ]
    if missing:
        raise IFEvalLayoutError(
            f"achilles_ifeval: the IFEval modules of {where} lack {', '.join(missing)}; "
            f"supported: lm-eval {LM_EVAL_SUPPORTED}"
        )


def lm_eval_checkers_folder() -> Path:
    """lm-eval's ``tasks/ifeval`` folder, after :func:`check_layout` on the installed lm-eval."""
    from importlib.metadata import version

    import lm_eval.tasks.ifeval as package  # a namespace package: no code runs

    folder = Path(next(iter(package.__path__)))
    check_layout(version("lm_eval"), folder)
    return folder


def _load_private_checkers(offline: bool, folder: Path | None = None):
    """lm-eval's three IFEval modules, executed again as this package's own copies.

    ``instructions`` and ``instructions_registry`` import their siblings with absolute imports, so
    while the copies run, ``lm_eval.tasks.ifeval.<name>`` points at the copy (in ``sys.modules`` and
    on the package) and is put back right after. lm-eval's shared modules are never imported or
    patched here: the stock ``ifeval`` task in the same process sees exactly what it would see
    without this package. ``offline``: the copy's import-time ``nltk.download`` is skipped. ``folder``:
    where the modules are read from (default: the installed lm-eval's, checked by :func:`check_layout`);
    the copies are checked for :data:`EXPECTED_ATTRIBUTES`."""
    import importlib.util
    import sys

    import lm_eval.tasks.ifeval as package  # a namespace package: no code runs
    import nltk

    folder = folder or lm_eval_checkers_folder()
    missing = object()
    saved = {n: (sys.modules.get(f"{package.__name__}.{n}", missing), getattr(package, n, missing)) for n in _MODULES}
    copies = {}
    original_download = nltk.download
    try:
        if offline:  # the copy would try the network, then print "Downloaded punkt_tab" regardless
            nltk.download = lambda *args, **kwargs: False
        for name in _MODULES:
            spec = importlib.util.spec_from_file_location(_PRIVATE_PREFIX + name, folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[f"{package.__name__}.{name}"] = module
            setattr(package, name, module)
            with contextlib.redirect_stdout(io.StringIO()):
                spec.loader.exec_module(module)
            copies[name] = module
    finally:
        nltk.download = original_download
        for name, (in_modules, on_package) in saved.items():
            key = f"{package.__name__}.{name}"
            if in_modules is missing:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = in_modules
            if on_package is missing:
                if hasattr(package, name):
                    delattr(package, name)
            else:
                setattr(package, name, on_package)
    _check_attributes(copies, str(folder))
    return copies


def registry():
    """``INSTRUCTION_DICT`` of this package's private copy of lm-eval's checkers, built once, offline-safe."""
    with _LOCK:
        if "registry" in _STATE:
            return _STATE["registry"]
        installed = _punkt_tab_installed()
        copies = _load_private_checkers(offline=not installed)
        if not installed:
            _install_offline_tokenizers(copies["instructions_util"])
        _STATE["splitter"] = "punkt_tab" if installed else "PunktSentenceTokenizer() (untrained, offline)"
        _STATE["registry"] = copies["instructions_registry"].INSTRUCTION_DICT
        return _STATE["registry"]


@contextlib.contextmanager
def _seeded_langdetect():
    """langdetect is randomised unless seeded: seed it while this package's checks run, so language
    checks are reproducible, and put the process-wide setting back afterwards."""
    import langdetect

    with _LOCK:
        previous = langdetect.DetectorFactory.seed
        langdetect.DetectorFactory.seed = 0
        try:
            yield
        finally:
            langdetect.DetectorFactory.seed = previous


def sentence_splitter() -> str:
    """Which sentence splitter the checkers use (after :func:`registry` ran)."""
    registry()
    return _STATE["splitter"]


def check_instructions(
    instruction_ids: Sequence[str], kwargs_list: Sequence[Mapping[str, Any] | None], prompt: str, response: str
) -> list[bool]:
    """The official strict checkers alone (no quality filter), on the stripped response.

    ``None`` kwargs (the hub schema fills every unused key with None) are dropped before building the
    checker; an instruction that takes the prompt gets it.
    """
    table = registry()
    if len(kwargs_list) != len(instruction_ids):
        raise ValueError(f"IFEval record has {len(instruction_ids)} instructions but {len(kwargs_list)} kwargs")
    text = (response or "").strip()
    out = []
    for iid, kwargs in zip(instruction_ids, kwargs_list):
        if iid not in table:
            raise ValueError(f"unknown IFEval instruction id {iid!r}")
        checker = table[iid](iid)
        checker.build_description(**{k: v for k, v in (kwargs or {}).items() if v is not None})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
        with _seeded_langdetect():
            out.append(bool(text) and bool(checker.check_following(text)))
    return out


def follow_instructions(
    instruction_ids: Sequence[str], kwargs_list: Sequence[Mapping[str, Any] | None], prompt: str, response: str
) -> list[bool]:
    """The paper's protocol: :func:`check_instructions`, except that a meaningless response follows nothing."""
    followed = check_instructions(instruction_ids, kwargs_list, prompt, response)
    return followed if is_meaningful(response) else [False] * len(followed)


def prompt(doc: Mapping[str, Any]) -> str:
    """The record's prompt, as-is."""
    return doc["prompt"]


def score(doc: Mapping[str, Any], response: str) -> dict[str, object]:
    """The paper's metrics (quality filter first) and the official checkers' score without the filter.

    The filter rejects any run of 6 identical characters, so instructions whose only passing answers
    contain one (``combination:two_responses`` needs ``******``) can never pass under the paper's
    metric; the ``*_unfiltered`` metrics show what the checkers alone say (docs/protocols.md)."""
    raw = check_instructions(doc["instruction_id_list"], doc["kwargs"], doc["prompt"], response)
    meaningful = is_meaningful(response)
    followed = raw if meaningful else [False] * len(raw)
    return {
        "prompt_level_strict_acc": float(all(followed)),
        "inst_level_strict_acc": [float(x) for x in followed],
        "prompt_level_strict_acc_unfiltered": float(all(raw)),
        "inst_level_strict_acc_unfiltered": [float(x) for x in raw],
        "meaningless_rate": float(not meaningful),
    }
