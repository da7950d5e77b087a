"""Identity of the ``locate=true`` cache and of mask files: architecture (fingerprint) vs weights.

Two checkpoints of one architecture (a base model and its fine-tune) have the same fingerprint; the
cache must still keep them apart (it used to key by names, shapes, dtype and parameters only, so the
second model silently got the first one's neurons)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llama

from lm_eval_achilles.harness.model_args import locate_cache_path, locate_cached
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.mask.mask_file import (
    Critical,
    MaskFile,
    ModelInfo,
    RankedNeuron,
    check_fingerprint,
    load_mask,
    save_mask,
)
from lm_eval_achilles.models.loading import LoadedModel, fingerprint, weights_digest

PARAMS = LocatorConfig()


def _loaded(seed, name="org/model"):
    return LoadedModel(make_tiny_llama(seed=seed), None, name, name)


def test_weights_digest_tells_checkpoints_of_one_architecture_apart():
    a, b = make_tiny_llama(seed=0), make_tiny_llama(seed=1)
    assert fingerprint(a) == fingerprint(b)  # same architecture ...
    assert weights_digest(a) != weights_digest(b)  # ... other weights
    assert weights_digest(a) == weights_digest(make_tiny_llama(seed=0))  # deterministic
    tuned = make_tiny_llama(seed=0)
    with torch.no_grad():  # a "fine-tune" that moves one matrix by 0.1 %
        tuned.model.layers[1].mlp.down_proj.weight.mul_(1.001)
    assert fingerprint(tuned) == fingerprint(a) and weights_digest(tuned) != weights_digest(a)


def test_locate_cache_entries_differ_for_equal_shapes_and_different_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    base, tuned = _loaded(0), _loaded(1)  # same name and shapes, different weights
    assert locate_cache_path(base, PARAMS) != locate_cache_path(tuned, PARAMS)
    assert locate_cache_path(base, PARAMS) == locate_cache_path(_loaded(0), PARAMS)
    assert locate_cache_path(base, PARAMS) != locate_cache_path(_loaded(0, "other/name"), PARAMS)
    assert locate_cache_path(base, PARAMS) != locate_cache_path(base, LocatorConfig(samples=7))
    assert locate_cache_path(base, PARAMS).parent == tmp_path / "locate"


def _mask_for(loaded):
    ranking = [RankedNeuron("model.layers.1.mlp.down_proj", 3, 5.0)]
    return MaskFile(
        model=ModelInfo(
            loaded.name_or_path, "LlamaForCausalLM", fingerprint(loaded.model), weights_digest(loaded.model)
        ),
        locator={"method": "perturbation"},
        ranking=ranking,
        critical=Critical(size=1, baseline_ppl=10.0, masked_ppl=100.0, delta=1.0, curve=[[0, 10.0], [1, 100.0]]),
        neurons=[r.neuron for r in ranking],
    )


def test_reused_entry_says_which_model_made_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    base = _loaded(0, "org/base")
    path = save_mask(_mask_for(base), locate_cache_path(base, PARAMS))
    mask, where = locate_cached(base, PARAMS)
    assert where == str(path) and mask.neurons == _mask_for(base).neurons
    printed = capsys.readouterr().out
    assert f"using cached locator result {path} (located on org/base, weights {weights_digest(base.model)})" in printed


def test_mask_file_records_weights_and_warns_on_other_weights(tmp_path):
    base, tuned = _loaded(0), _loaded(1)
    path = save_mask(_mask_for(base), tmp_path / "m.json")
    mask = load_mask(path)
    assert mask.model.weights_digest == weights_digest(base.model)
    check_fingerprint(mask, fingerprint(base.model), weights_digest=weights_digest(base.model))  # silent
    # architecture-level on purpose: a fine-tune gets the mask, with a warning naming where it came from
    with pytest.warns(UserWarning, match="located on other weights of this architecture .org/model"):
        check_fingerprint(mask, fingerprint(tuned.model), weights_digest=weights_digest(tuned.model))
