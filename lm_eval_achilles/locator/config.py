"""``LocatorConfig``: every setting of the locator in one frozen, self-validating dataclass.

One vocabulary for the whole package: ``locate()``, the studies, ``achilles demo``, ``achilles compare``
and the lm-eval model argument ``locate=true`` all take a ``LocatorConfig``; the CLI builds it from one
shared argument group (:func:`lm_eval_achilles.cli.common.add_locator_arguments`), the lm-eval model from
``locate_<field>`` model arguments (:meth:`LocatorConfig.from_model_args`), and a mask file's ``locator``
block is written by :meth:`LocatorConfig.to_record` and read back by :meth:`LocatorConfig.from_record`
(files written before a field existed load with that field's default).

Three groups of settings (docs/method.md gives the meaning of each):

- stage 1, the ranker: ``method``, ``text`` (the probe), ``alpha``, ``samples`` (K or ``"auto"``),
  ``seed``, ``granularity``, ``batch_size`` (noisy samples per forward), ``ranking_size`` (entries kept),
  ``modules`` (candidate filter), ``prompts`` (keystone ranker), ``max_memory`` (stage 1's memory
  budget in bytes: over it, stage 1 runs over groups of modules, with the same ranking);
- stage 2, the search: ``test_text``, ``epsilon``, ``step``, ``max_steps``, ``scale`` (beta),
  ``search_batch_size`` (masked sets per batched forward), ``search`` (``galloping`` or the paper's
  ``linear`` walk over the prefixes; files written before it existed were linear and load so),
  ``patience`` (an early stop for a model with no critical set; None: off, as in the paper);
- ``minimize`` and its budget ``max_evals`` (candidate sets; default ``defaults.MAX_EVALS``, None: no limit).

``progress`` (progress bars) and ``max_memory`` are not settings of the result (the ranking is the same
under any budget): they are neither compared nor recorded.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from lm_eval_achilles import defaults
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.rankers import RANKERS
from lm_eval_achilles.locator.ranking import GRANULARITIES
from lm_eval_achilles.validate import as_bool, as_bytes, as_float, as_int, as_text

#: Fields that describe how a run is shown or fitted into memory, not what it computes: not recorded.
RUNTIME_FIELDS = ("progress", "max_memory")
#: Fields no model-argument string carries (a mapping; how the run is shown).
NOT_MODEL_ARGS = ("prompts", "progress")
#: How an error names a field, where it is not the field's own name.
LABELS = {"text": "probe text", "test_text": "test text", "ranking_size": "ranking size k"}


@dataclass(frozen=True)
class LocatorConfig:
    # ---- stage 1: the ranker
    method: str = "perturbation"
    text: str = defaults.PROBE_TEXT
    alpha: float = defaults.ALPHA
    samples: int | str = defaults.SAMPLES  # K, or "auto" (docs/method.md, "Adaptive K")
    seed: int = defaults.SEED
    granularity: str = "channel"
    batch_size: int = defaults.STAGE1_BATCH_SIZE
    ranking_size: int = defaults.RANKING_SIZE
    modules: str | None = None
    #: keystone ranker only: capability type -> prompt texts (None = the built-in KEYSTONE_PROMPTS)
    prompts: Mapping[str, Sequence[str]] | None = field(default=None, hash=False)  # a dict: compared, not hashed
    #: keystone ranker only: new tokens generated per prompt, and the top fraction rho kept per module block
    keystone_tokens: int = 32
    keystone_fraction: float = 0.05
    #: stage-1 memory budget in bytes (None: no limit); over it, stage 1 runs over groups of modules
    max_memory: int | None = field(default=None, compare=False)
    # ---- stage 2: the search
    test_text: str | None = None
    epsilon: float = defaults.EPSILON
    step: int = defaults.STEP
    max_steps: int = defaults.MAX_STEPS
    scale: float = 0.0
    search_batch_size: int = defaults.SEARCH_BATCH_SIZE
    search: str = defaults.SEARCH  # "galloping" or "linear" (the paper's walk)
    #: beyond the paper: end a walk with no crossing once Delta has not risen for this many prefixes
    patience: int | None = None
    # ---- after stage 2
    minimize: bool = False
    max_evals: int | None = defaults.MAX_EVALS  # None: no limit
    # ---- shown, not recorded
    progress: bool = field(default=True, compare=False)

    def __post_init__(self):
        """Checked when built (and again by ``dataclasses.replace``), so every caller refuses nonsense
        before a model is used: ``alpha=nan`` would otherwise fail only after the whole stage 1."""
        set_ = object.__setattr__.__get__(self)  # frozen: normalised values are written once, here
        if self.method not in RANKERS:
            raise AchillesError(f"unknown method {self.method!r}; choose one of {', '.join(RANKERS)}")
        set_("text", as_text(self.text, LABELS["text"]))
        if self.test_text is not None:
            set_("test_text", as_text(self.test_text, LABELS["test_text"]))
        set_("alpha", as_float(self.alpha, "alpha", positive=True))
        if self.samples == "auto":
            if self.method != "perturbation":
                raise AchillesError(f"samples=auto applies to the perturbation method only, not {self.method!r}")
        else:
            set_("samples", as_int(self.samples, "samples", minimum=1))
        set_("seed", as_int(self.seed, "seed", minimum=0))
        if self.granularity not in GRANULARITIES:
            raise AchillesError(f"unknown granularity {self.granularity!r}; choose channel or position")
        set_("batch_size", as_int(self.batch_size, "batch_size", minimum=1))
        set_("ranking_size", as_int(self.ranking_size, LABELS["ranking_size"], minimum=1))
        if self.modules is not None:
            set_("modules", as_text(self.modules, "modules"))
        if self.prompts is not None:
            set_("prompts", _prompts(self.prompts))
        set_("keystone_tokens", as_int(self.keystone_tokens, "keystone_tokens", minimum=1))
        set_("keystone_fraction", as_float(self.keystone_fraction, "keystone_fraction", positive=True))
        if self.keystone_fraction > 1:
            raise AchillesError(f"keystone_fraction must be <= 1, got {self.keystone_fraction}")
        if self.max_memory is not None:
            set_("max_memory", as_bytes(self.max_memory, "max_memory"))
        set_("epsilon", as_float(self.epsilon, "epsilon", positive=True))  # nan would never be crossed
        set_("step", as_int(self.step, "step", minimum=1))
        set_("max_steps", as_int(self.max_steps, "max_steps", minimum=1))
        set_("scale", as_float(self.scale, "scale"))
        set_("search_batch_size", as_int(self.search_batch_size, "search_batch_size", minimum=1))
        if self.search not in defaults.SEARCHES:
            raise AchillesError(f"unknown search {self.search!r}; choose {' or '.join(defaults.SEARCHES)}")
        if self.patience is not None:
            set_("patience", as_int(self.patience, "patience", minimum=1))
        set_("minimize", as_bool(self.minimize, "minimize"))
        if self.max_evals is not None:
            set_("max_evals", as_int(self.max_evals, "max_evals", minimum=1))
        if self.max_evals != defaults.MAX_EVALS and not self.minimize:
            raise AchillesError(f"max_evals={self.max_evals} needs minimize")

    # ---- building ---------------------------------------------------------------------------------
    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, config: LocatorConfig | None = None, **settings) -> LocatorConfig:
        """``config`` (default: the paper's settings) with ``settings`` replaced; an unknown name is an
        error that suggests the closest field."""
        unknown = [k for k in settings if k not in cls.names()]
        if unknown:
            close = difflib.get_close_matches(unknown[0], cls.names(), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; choose from {', '.join(cls.names())}"
            raise AchillesError(f"unknown locator setting {unknown[0]!r}{hint}")
        base = config if config is not None else cls()
        return replace(base, **settings) if settings else base

    # ---- the lm-eval model's ``locate_*`` arguments ------------------------------------------------
    @classmethod
    def model_arg_names(cls) -> tuple[str, ...]:
        """``locate_<field>`` for every setting a model-argument string can carry (not ``prompts``, a
        mapping, nor ``progress``)."""
        return tuple(f"locate_{n}" for n in cls.names() if n not in NOT_MODEL_ARGS)

    @classmethod
    def from_model_args(cls, args: Mapping[str, Any], **settings) -> LocatorConfig:
        """From ``locate_alpha=3,locate_samples=auto,...`` (lm-eval's parsed model arguments; the
        ``locate_`` prefix is stripped). Values are checked as in every other path, naming the argument."""
        given = {k.removeprefix("locate_"): v for k, v in args.items()}
        try:
            return cls.build(**given, **settings)
        except AchillesError as exc:
            # "alpha must be > 0" -> "locate_alpha must be > 0": the name the user typed
            msg = str(exc)
            for name in given:
                label = LABELS.get(name, name)
                if msg.startswith(f"{label} "):
                    msg = f"locate_{name}" + msg[len(label) :]
                    break
            raise AchillesError(msg) from None

    # ---- the mask file's ``locator`` block ---------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The settings as the mask file's ``locator`` block (JSON types; ``minimize``/``max_evals``,
        ``patience`` and ``prompts`` only when used, as files written before them had none)."""
        d = {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}
        if not self.minimize:
            d.pop("minimize")
            d.pop("max_evals")
        if self.patience is None:
            d.pop("patience")
        if self.prompts is None:
            d.pop("prompts")
        else:
            d["prompts"] = {k: list(v) for k, v in self.prompts.items()}
        return d

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **settings) -> LocatorConfig:
        """The settings a mask file records. Keys that are facts of the run, not settings (``dtype``,
        ``probe_tokens``, ``samples_used`` ...), are ignored; a missing key takes its default (older
        files), so a file reads back to the config that wrote it. The one exception is ``search``: files
        written before it existed were searched by the linear walk, so they read back as ``linear``,
        whatever today's default."""
        known = {k: v for k, v in record.items() if k in cls.names() and k not in RUNTIME_FIELDS}
        known.setdefault("search", "linear")
        if known.get("max_evals") is not None and not known.get("minimize"):
            known["minimize"] = True
        return cls.build(**known, **settings)

    def differences(self, other: LocatorConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (mine, theirs)}`` for every recorded setting that differs."""
        a, b = self.to_record(), other.to_record()
        keys = [k for k in self.names() if k in a or k in b]
        return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def _prompts(prompts) -> dict[str, tuple[str, ...]]:
    if not isinstance(prompts, Mapping) or not prompts:
        raise AchillesError("prompts must be a non-empty mapping of capability type -> list of texts")
    out = {}
    for kind, texts in prompts.items():
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise AchillesError(f"prompts[{kind!r}] must be a list of texts")
        out[str(kind)] = tuple(as_text(t, f"prompts[{kind!r}]") for t in texts)
    return out
