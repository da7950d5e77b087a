"""What to mask, as requested by the user (mask file / top_n / locate / scale / apply), validated
before any model is loaded, and resolved against the model once it is. Shared by the lm-eval model
``achilles_masked`` and ``achilles export``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_achilles import defaults
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import dtype_name
from lm_eval_achilles.locator.mask_file import SELECTIONS, MaskFile, Neuron, distinct, load_mask

APPLY_MODES = ("hooks", "fold")


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise AchillesError(f"{name} must be true or false, got {value!r}")


def _as_number(value: Any, name: str, kind=float):
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise AchillesError(f"{name} must be a {kind.__name__}, got {value!r}") from None
    if kind is int and float(value) != out:
        raise AchillesError(f"{name} must be an integer, got {value!r}")
    return out


@dataclass
class MaskingSpec:
    mask_path: str | None = None
    top_n: int | None = None
    scale: float = 0.0
    apply: str = "hooks"
    select: str = "critical"
    locate: bool = False
    locate_params: dict[str, Any] = field(default_factory=dict)
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
        locate_text=None,
        locate_alpha=defaults.ALPHA,
        locate_samples=defaults.SAMPLES,
        locate_epsilon=defaults.EPSILON,
        locate_seed=defaults.SEED,
        allow_fingerprint_mismatch=False,
    ) -> MaskingSpec:
        """Parse and check everything that can be checked without the model (fail before evaluating)."""
        apply = str(apply)
        if apply not in APPLY_MODES:
            raise AchillesError(f"unknown apply={apply!r}; choose hooks or fold")
        select = str(select)
        if select not in SELECTIONS:
            raise AchillesError(f"unknown select={select!r}; choose critical or minimal")
        if select == "minimal" and top_n not in (None, 0):
            raise AchillesError(f"give either top_n={top_n} or select=minimal, not both")
        locate = _as_bool(locate, "locate")
        if mask and locate:
            raise AchillesError("give either mask=PATH or locate=true, not both")
        top_n = None if top_n is None else _as_number(top_n, "top_n", int)
        if top_n is not None and top_n < 0:
            raise AchillesError(f"top_n must be >= 0, got {top_n}")
        if top_n not in (None, 0) and not mask and not locate:
            raise AchillesError(f"top_n={top_n} needs a ranking: pass mask=PATH or locate=true")
        spec = cls(
            mask_path=str(mask) if mask else None,
            top_n=top_n,
            scale=_as_number(scale, "scale"),
            apply=apply,
            select=select,
            locate=locate,
            allow_fingerprint_mismatch=_as_bool(allow_fingerprint_mismatch, "allow_fingerprint_mismatch"),
            locate_params={
                "text": locate_text if locate_text else defaults.PROBE_TEXT,
                "alpha": _as_number(locate_alpha, "locate_alpha"),
                "samples": _as_number(locate_samples, "locate_samples", int),
                "epsilon": _as_number(locate_epsilon, "locate_epsilon"),
                "seed": _as_number(locate_seed, "locate_seed", int),
                **({"minimize": True} if select == "minimal" else {}),
            },
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
        from lm_eval_achilles.locator.mask_file import check_fingerprint
        from lm_eval_achilles.locator.masking import validate_neurons
        from lm_eval_achilles.models.loading import fingerprint

        if self.unmasked:
            return []
        if self.locate:
            self.mask_file, self.mask_path = locate_cached(loaded, self.locate_params)
        check_fingerprint(self.mask_file, fingerprint(loaded.model), self.allow_fingerprint_mismatch)
        neurons = distinct(self.mask_file.select(self.top_n, self.select))
        if not neurons:
            raise AchillesError(f"the mask {self.mask_path} selects no neurons (empty critical set); pass top_n=K")
        validate_neurons(loaded.model, neurons)
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

    def condition_key(self, neurons: list[Neuron]) -> str:
        """Identifies the masking condition (for cache separation): same neurons + scale = same key."""
        if not neurons:
            return "unmasked"
        payload = json.dumps([[n.module, n.channel] for n in sorted(neurons)] + [self.scale])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def locate_cached(loaded, params: dict[str, Any]) -> tuple[MaskFile, str]:
    """Run the locator once per (model fingerprint, dtype, parameters); later calls read the cached mask."""
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.locator.mask_file import save_mask
    from lm_eval_achilles.locator.rankers import RankerConfig
    from lm_eval_achilles.models.embedded import cache_dir
    from lm_eval_achilles.models.loading import fingerprint

    dtype = dtype_name(next(loaded.model.parameters()).dtype)
    key = hashlib.sha256(json.dumps([fingerprint(loaded.model), dtype, params], sort_keys=True).encode()).hexdigest()[
        :20
    ]
    path = cache_dir() / "locate" / f"{key}.json"
    if path.is_file():
        print(f"[achilles] using cached locator result {path}")
        return load_mask(path), str(path)
    print(f"[achilles] locating critical neurons (cached afterwards in {path})")
    mask = locate(
        loaded,
        text=params["text"],
        epsilon=params["epsilon"],
        config=RankerConfig(alpha=params["alpha"], samples=params["samples"], seed=params["seed"]),
        dtype=dtype,
        minimize=bool(params.get("minimize")),
    )
    save_mask(mask, path)
    return mask, str(path)
