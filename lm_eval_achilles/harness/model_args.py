"""What to mask, as requested by the user (mask file / top_n / locate / scale / apply), validated
before any model is loaded, and resolved against the model once it is. Shared by the lm-eval model
``achilles_masked`` and ``achilles export``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import dtype_name
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.mask.mask_file import SELECTIONS, MaskFile, Neuron, distinct, load_mask
from lm_eval_achilles.validate import as_bool, as_float, as_int, as_text

APPLY_MODES = ("hooks", "fold")

#: The locator arguments of ``locate=true``: one per LocatorConfig setting (defaults are the paper's).
LOCATE_ARGS = LocatorConfig.model_arg_names()
#: Every model argument this package adds to HFLM's.
SPEC_ARGS = ("mask", "top_n", "select", "scale", "apply", "locate", *LOCATE_ARGS, "allow_fingerprint_mismatch")


def check_arg_names(names, passthrough=()) -> None:
    """Refuse a model argument that looks like one of ours but is not (``locate_sample``, ``topn``,
    ``mask_file``): HFLM would hand it to transformers, which ignores it, so the setting would be lost
    without a word. ``passthrough`` are the names the wrapped model accepts itself."""
    import difflib

    for name in names:
        if name in SPEC_ARGS or name in passthrough:
            continue
        close = difflib.get_close_matches(name, SPEC_ARGS, n=1, cutoff=0.75)
        if close or name.startswith("locate"):
            hint = f"; did you mean {close[0]}?" if close else f"; choose one of {', '.join(LOCATE_ARGS)}"
            raise AchillesError(f"unknown model argument {name!r}{hint}")


@dataclass
class MaskingSpec:
    mask_path: str | None = None
    top_n: int | None = None
    scale: float = 0.0
    apply: str = "hooks"
    select: str = "critical"
    locate: bool = False
    locate_config: LocatorConfig | None = None  # the locator's settings when locate=true
    allow_fingerprint_mismatch: bool = False
    mask_file: MaskFile | None = None

    @classmethod
    def from_args(
        cls,
        mask=None,
        top_n=None,
        scale=0.0,
        apply="hooks",
        select="critical",
        locate=False,
        allow_fingerprint_mismatch=False,
        **locate_args,
    ) -> MaskingSpec:
        """Parse and check everything that can be checked without the model (fail before loading it).

        Every value is checked, whatever else is given: an empty ``mask=`` (an unset shell variable), a
        non-finite ``scale``, ``locate_samples=0`` or a ``locate_*`` value without ``locate=true`` is an
        error, never a silent fallback to the unmasked model or to the defaults."""
        apply = str(apply)
        if apply not in APPLY_MODES:
            raise AchillesError(f"unknown apply={apply!r}; choose hooks or fold")
        select = str(select)
        if select not in SELECTIONS:
            raise AchillesError(f"unknown select={select!r}; choose critical or minimal")
        if select == "minimal" and top_n not in (None, 0):
            raise AchillesError(f"give either top_n={top_n} or select=minimal, not both")
        locate = as_bool(locate, "locate")
        if mask is not None:
            mask = as_text(mask if isinstance(mask, str) else str(mask), "mask")
        if mask and locate:
            raise AchillesError("give either mask=PATH or locate=true, not both")
        top_n = None if top_n is None else as_int(top_n, "top_n", minimum=0)
        if top_n not in (None, 0) and not mask and not locate:
            raise AchillesError(f"top_n={top_n} needs a ranking: pass mask=PATH or locate=true")
        unknown = [k for k in locate_args if k not in LOCATE_ARGS]
        if unknown:
            check_arg_names(unknown)
            raise AchillesError(f"unknown model argument {unknown[0]!r}")
        given = {k: v for k, v in locate_args.items() if v is not None}
        if given and not locate:
            raise AchillesError(f"{', '.join(given)} only apply with locate=true")
        locate_config = None
        if locate:
            if select == "minimal":
                given.setdefault("locate_minimize", True)
            locate_config = LocatorConfig.from_model_args(given)
        spec = cls(
            mask_path=mask or None,
            top_n=top_n,
            scale=as_float(scale, "scale"),
            apply=apply,
            select=select,
            locate=locate,
            allow_fingerprint_mismatch=as_bool(allow_fingerprint_mismatch, "allow_fingerprint_mismatch"),
            locate_config=locate_config,
        )
        if spec.mask_path:
            spec.mask_file = load_mask(spec.mask_path)
            # top_n beyond the ranking, or select=minimal on a mask without one, fails here, before loading
            spec.mask_file.select(top_n, select)
        return spec

    @property
    def unmasked(self) -> bool:
        return self.top_n == 0 or (not self.mask_path and not self.locate)

    def resolve(self, loaded) -> list[Neuron]:
        """The neurons to mask on this model (runs or reuses the locator if ``locate=true``)."""
        from lm_eval_achilles.mask.masking import validate_neurons
        from lm_eval_achilles.models.loading import weights_digest

        if self.unmasked:
            return []
        if self.locate:
            self.mask_file, self.mask_path = locate_cached(loaded, self.locate_config)
        neurons = self._selected(loaded.model, weights_digest(loaded.model))
        validate_neurons(loaded.model, neurons)
        return neurons

    def precheck(self, skeleton) -> None:
        """What :meth:`resolve` checks, on a weightless copy of the model (``models.loading.load_skeleton``):
        fingerprint, module names, and channel ranges where a module declares its output size. Lets a
        command refuse a mask made for another model before hours of evaluation, not after."""
        from lm_eval_achilles.mask.masking import validate_declared

        if self.unmasked or self.locate:
            return
        validate_declared(skeleton, self._selected(skeleton))

    def _selected(self, model, weights: str | None = None) -> list[Neuron]:
        from lm_eval_achilles.mask.mask_file import check_fingerprint
        from lm_eval_achilles.models.loading import fingerprint

        check_fingerprint(self.mask_file, fingerprint(model), self.allow_fingerprint_mismatch, weights)
        neurons = distinct(self.mask_file.select(self.top_n, self.select))
        if not neurons:
            raise AchillesError(f"the mask {self.mask_path} selects no neurons (empty critical set); pass top_n=K")
        return neurons

    def provenance(self, neurons: list[Neuron]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "masked": bool(neurons),
            "source": "none" if self.unmasked else ("locate" if self.locate else "mask"),
            "mask_file": self.mask_path,
            "mask_sha256": file_sha256(self.mask_path) if self.mask_path else None,
            "top_n": self.top_n,
            "select": self.select,
            "n_channels": len(neurons),
            "modules": sorted({n.module for n in neurons}),
            "scale": self.scale,
            "apply": self.apply,
            "neurons": [[n.module, n.channel] for n in neurons[:100]],
        }
        return info

    def describe(self, neurons: list[Neuron]) -> str:
        """One console line: what is masked, from where, and how (``unmasked`` for the original)."""
        if not neurons:
            return "unmasked: nothing is masked (the original model)"
        modules = sorted({n.module for n in neurons})
        source = f"located on this model ({self.mask_path})" if self.locate else f"from {self.mask_path}"
        which = f"top_n={self.top_n}" if self.top_n not in (None, 0) else f"the {self.select} set"
        return (
            f"masking {len(neurons)} neuron(s) in {len(modules)} module(s) ({which} {source}), "
            f"scale {self.scale:g}, apply={self.apply}"
        )

    def condition_key(self, neurons: list[Neuron]) -> str:
        """Identifies the masking condition (for cache separation): same neurons + scale = same key."""
        if not neurons:
            return "unmasked"
        payload = json.dumps([[n.module, n.channel] for n in sorted(neurons)] + [self.scale])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def locate_cache_path(loaded, config) -> Path:
    """Where ``locate=true`` keeps its result for this model: the key covers the model's name or path,
    its architecture (``fingerprint``), its weights (``weights_digest``, a fixed sample of the values),
    the loaded dtype and the locator's settings (``LocatorConfig.to_record``). Two checkpoints of one
    architecture (a base model and its fine-tune) therefore never share an entry."""
    from lm_eval_achilles.models.loading import fingerprint, weights_digest
    from lm_eval_achilles.models.named import cache_dir

    model = loaded.model
    identity = [
        str(loaded.name_or_path),
        fingerprint(model),
        weights_digest(model),
        dtype_name(next(model.parameters()).dtype),
        config.to_record(),
    ]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "locate" / f"{key}.json"


def locate_cached(loaded, config) -> tuple[MaskFile, str]:
    """Run the locator once per model (name, architecture, weights, dtype) and settings; later calls
    read the cached mask and say which model produced it. Under ``accelerate launch`` only rank 0
    locates; the other ranks wait for its entry (:mod:`~lm_eval_achilles.harness.distributed`)."""
    from lm_eval_achilles.harness import distributed
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.mask.mask_file import save_mask

    path = locate_cache_path(loaded, config)
    if not path.is_file() and distributed.is_waiting_rank():
        distributed.wait_for(path)
    if path.is_file():
        mask = load_mask(path)
        made_by = f"{mask.model.name_or_path}, weights {mask.model.weights_digest or 'unknown'}"
        print(f"[achilles] using cached locator result {path} (located on {made_by})")
        return mask, str(path)
    print(f"[achilles] locating critical neurons (cached afterwards in {path})")
    distributed.failed_note(path).unlink(missing_ok=True)
    try:
        mask = locate(loaded, config)
        save_mask(mask, path)
    except BaseException as exc:
        if distributed.rank_and_size()[1] > 1:
            distributed.note_failure(path, exc)
        raise
    return mask, str(path)
