"""lm-eval model ``achilles_masked``: Hugging Face's HFLM with a neuron mask (DESIGN.md section 3.3).

    lm_eval --model achilles_masked --model_args pretrained=MODEL,mask=mask.json --tasks ...

Every HFLM argument passes through. Extra arguments: ``mask=PATH``, ``top_n=K`` (first K of the
ranking; 0 = the unmasked original), ``select=critical|minimal`` (the paper's critical set, or the
minimal set of ``achilles locate --minimize``), ``scale=beta``, ``apply=hooks|fold``, ``locate=true`` with
``locate_text/alpha/samples/epsilon/seed``, ``allow_fingerprint_mismatch``. ``pretrained`` may be
omitted (or ``embedded``) for the embedded SmolLM2-135M-Instruct. Hooks are applied by a context
manager around each model call and generation, like lm-eval's own ``steered`` model.
"""

from __future__ import annotations

from contextlib import nullcontext

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.model_args import MaskingSpec
from lm_eval_achilles.locator.masking import fold, masked
from lm_eval_achilles.models.loading import LoadedModel, default_device, resolve_pretrained

_SPEC_ARGS = (
    "mask",
    "top_n",
    "scale",
    "apply",
    "locate",
    "select",
    "locate_text",
    "locate_alpha",
    "locate_samples",
    "locate_epsilon",
    "locate_seed",
    "allow_fingerprint_mismatch",
)


@register_model("achilles_masked")
class AchillesMaskedLM(HFLM):
    def __init__(self, pretrained=None, device: str | None = None, **kwargs):
        spec = MaskingSpec.from_args(**{k: kwargs.pop(k) for k in _SPEC_ARGS if k in kwargs})
        if pretrained is None or isinstance(pretrained, str):
            pretrained = resolve_pretrained(pretrained)
        super().__init__(pretrained=pretrained, device=device or default_device(), **kwargs)
        self.achilles_spec = spec
        loaded = LoadedModel(self.model, self.tokenizer, str(pretrained), str(pretrained))
        self.achilles_neurons = spec.resolve(loaded)
        self.achilles_condition = spec.condition_key(self.achilles_neurons)
        if spec.apply == "fold" and self.achilles_neurons:
            fold(self.model, self.achilles_neurons, spec.scale)

    def _mask_context(self):
        if self.achilles_spec.apply == "hooks" and self.achilles_neurons:
            return masked(self.model, self.achilles_neurons, self.achilles_spec.scale, validate=False)
        return nullcontext()

    def _model_call(self, *args, **kwargs):
        with self._mask_context():
            return super()._model_call(*args, **kwargs)

    def _model_generate(self, *args, **kwargs):
        with self._mask_context():
            return super()._model_generate(*args, **kwargs)

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info["achilles_mask"] = self.achilles_spec.provenance(self.achilles_neurons)
        return info

    def set_cache_hook(self, cache_hook) -> None:
        """Keep ``--use_cache`` answers of different masking conditions apart.

        lm-eval keys its sqlite cache by the request alone, so a cache path shared by an original and a
        masked run would serve one run's answers to the other. A masked run therefore reads and writes
        its own table (named by the mask) in the cache file; the unmasked original uses the default
        table, which it shares with a plain ``hf`` run of the same model."""
        db = getattr(cache_hook, "dbdict", None)
        if db is not None and self.achilles_neurons:
            if not (hasattr(db, "tablename") and hasattr(db, "conn")):
                raise AchillesError(
                    "--use_cache cannot be separated by mask with this lm-eval version; "
                    "use a different cache path for masked runs"
                )
            db.tablename = f"achilles_{self.achilles_condition}"
            db.conn.execute(f'CREATE TABLE IF NOT EXISTS "{db.tablename}" (key TEXT PRIMARY KEY, value BLOB)')
            db.conn.commit()
        super().set_cache_hook(cache_hook)
