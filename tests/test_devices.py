"""Where the locator puts inputs and what it asks of a model's forward: ids and noise on the input
embedding's device (weights offloaded by accelerate sit on ``meta``), ``logits_to_keep`` only where the
forward takes it (a model with its own code may not), and ``load_model`` loading straight to the device."""

from __future__ import annotations

import torch
from torch import nn

from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.locate import rank_and_search
from lm_eval_achilles.models.forward import accepts, input_device
from tests.conftest import make_tiny_llama

IDS = torch.tensor([[1, 17, 42, 8, 25, 11, 5, 9, 30, 2, 61, 14]])
CFG = LocatorConfig(samples=6, batch_size=3, max_steps=4, epsilon=50.0, progress=False)


def _locate(model):
    names = candidate_modules(model, "*down_proj")
    return rank_and_search(model, None, IDS, IDS, names, CFG)


class NoLogitsToKeep(nn.Module):
    """A causal LM as remote code may write it: its forward takes no ``logits_to_keep`` (nor ``use_cache``)
    and computes every position's logits."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):
        return self.inner(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)


def test_a_forward_without_logits_to_keep_is_located_like_the_model_itself():
    model = make_tiny_llama()
    wrapped = NoLogitsToKeep(model).eval()
    assert accepts(model, "logits_to_keep") and not accepts(wrapped, "logits_to_keep")
    try:  # what the locator did before: pass it anyway
        wrapped(input_ids=IDS, use_cache=False, logits_to_keep=1)
        raised = False
    except TypeError:
        raised = True
    assert raised
    mine, ref = _locate(wrapped), _locate(model)
    assert [(r.module.removeprefix("inner."), r.channel, r.score) for r in mine.ranking] == [
        (r.module, r.channel, r.score) for r in ref.ranking
    ]
    assert mine.result.curve == ref.result.curve


def test_offloaded_weights_take_inputs_on_the_embedding_execution_device():
    from accelerate import cpu_offload

    ref = _locate(make_tiny_llama())
    model = make_tiny_llama()
    cpu_offload(model, execution_device=torch.device("cpu"))  # weights on meta, loaded per forward
    assert next(model.parameters()).device.type == "meta"
    assert input_device(model) == torch.device("cpu")
    got = _locate(model)
    assert got.ranking == ref.ranking and got.result.curve == ref.result.curve


def test_load_model_without_a_device_map_loads_straight_to_the_device(monkeypatch):
    """No ``.to(device)`` after loading: the weights are placed while loading (``device_map`` = the device)."""
    from transformers import PreTrainedModel

    from lm_eval_achilles.models.loading import load_model

    moves = []
    original = PreTrainedModel.to

    def spy(self, *args, **kwargs):
        moves.append((args, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "to", spy)
    loaded = load_model(None, dtype="float32", device="cpu")
    assert moves == [] and loaded.device == torch.device("cpu")
