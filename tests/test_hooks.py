"""Exact masking on the real embedded model: zeros, beta scaling, batch rows, KV cache, fold, cleanup."""

from __future__ import annotations

import pytest
import torch

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import Neuron
from lm_eval_achilles.mask.masking import fold, folded, masked, output_sizes, row_masked, unfold

CRITICAL = [Neuron("model.layers.11.mlp.down_proj", 507)]
SEVERAL = CRITICAL + [Neuron("model.layers.3.self_attn.q_proj", 5), Neuron("model.layers.20.mlp.up_proj", 100)]
PROMPTS = [
    "The capital of France is",
    "Water is made of hydrogen and oxygen, and",
    "One, two, three,",
    "In 1969 two astronauts walked on the",
]


def _capture(model, name):
    seen = []
    module = dict(model.named_modules())[name]
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    return seen, handle


def _ids(tok, text):
    return tok(text, return_tensors="pt").input_ids


@torch.no_grad()
def test_masked_channel_is_exactly_zero_everywhere_and_others_untouched(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = torch.cat([_ids(tok, "The capital of France is Paris, a city")] * 3)
    # a hook registered after the mask hook sees the masked output
    with masked(model, SEVERAL):
        seen, h = _capture(model, "model.layers.11.mlp.down_proj")
        model(ids)
        h.remove()
    seen_clean, h = _capture(model, "model.layers.11.mlp.down_proj")
    model(ids)
    h.remove()
    out, clean = seen[0], seen_clean[0]
    assert out.shape[0] == 3  # every batch row ...
    assert torch.all(out[:, :, 507] == 0)  # ... and every position
    assert clean[:, :, 507].abs().max() > 1.0  # the channel was not zero to begin with
    # upstream of the first masked module (layer 3 q_proj), layer 2 is unchanged; downstream differs
    keep = [c for c in range(out.shape[-1]) if c != 507]
    assert not torch.equal(out[:, :, keep], clean[:, :, keep])


@torch.no_grad()
def test_scale_beta_multiplies_the_channel(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = _ids(tok, "The capital of France is")
    name = "model.layers.0.mlp.down_proj"  # first module: its input is unaffected by the mask
    seen_clean, h = _capture(model, name)
    model(ids)
    h.remove()
    with masked(model, [Neuron(name, 7), Neuron(name, 9)], scale=-0.5):
        seen, h = _capture(model, name)
        model(ids)
        h.remove()
    assert torch.equal(seen[0][..., 7], seen_clean[0][..., 7] * -0.5)
    assert torch.equal(seen[0][..., 9], seen_clean[0][..., 9] * -0.5)
    assert torch.equal(seen[0][..., 8], seen_clean[0][..., 8])


@torch.no_grad()
def test_logits_identical_for_batch_size_1_and_4(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = _ids(tok, PROMPTS[0])
    with masked(model, SEVERAL):
        one = model(ids).logits
        four = model(ids.expand(4, -1)).logits
    # every row of the batch is masked the same way: the rows are bit-identical to each other ...
    for row in range(1, 4):
        assert torch.equal(four[row], four[0])
    # ... and equal to batch size 1 up to the CPU GEMM's batch-size-dependent rounding, which the
    # unmasked model shows just the same (a row-0-only mask, the reference code's bug, is far off)
    unmasked_one, unmasked_four = model(ids).logits, model(ids.expand(4, -1)).logits
    gemm_noise = (unmasked_four[0] - unmasked_one[0]).abs().max().item()
    assert (four[0] - one[0]).abs().max().item() <= max(10 * gemm_noise, 1e-4)
    assert torch.equal(four[0].argmax(-1), one[0].argmax(-1))
    assert (four[0] - unmasked_four[0]).abs().max().item() > 1.0


@torch.no_grad()
def test_kv_cache_decoding_equals_full_recompute(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = _ids(tok, PROMPTS[0])
    with masked(model, SEVERAL):
        gen = model.generate(
            ids,
            max_new_tokens=8,
            do_sample=False,
            use_cache=True,
            pad_token_id=tok.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        gen_nocache = model.generate(
            ids, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=tok.pad_token_id
        )
        full = model(gen.sequences, use_cache=False).logits
    assert torch.equal(gen.sequences, gen_nocache)
    # each decoding step's logits (from the KV cache) match a masked full forward
    n = ids.shape[1]
    for step, logits in enumerate(gen.logits):
        torch.testing.assert_close(logits[0], full[0, n - 1 + step], rtol=1e-4, atol=1e-4)
    unmasked = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert not torch.equal(unmasked, gen.sequences)


@torch.no_grad()
def test_unmasked_after_context_is_bit_identical(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = _ids(tok, PROMPTS[1])
    before = model(ids).logits
    with masked(model, SEVERAL):
        during = model(ids).logits
    after = model(ids).logits
    assert not torch.equal(before, during)
    assert torch.equal(before, after)
    with pytest.raises(RuntimeError):
        with masked(model, SEVERAL):
            raise RuntimeError("boom")  # hooks are removed on errors too
    assert torch.equal(model(ids).logits, before)


@torch.no_grad()
def test_fold_equals_hooks_and_restores_weights(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = _ids(tok, PROMPTS[2])
    before = model(ids).logits
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with masked(model, SEVERAL):
        hooked = model(ids).logits
    with folded(model, SEVERAL):
        folded_logits = model(ids).logits
    assert torch.equal(hooked, folded_logits)
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert torch.equal(model(ids).logits, before)
    saved = fold(model, CRITICAL, scale=0.5)
    assert torch.equal(
        model.model.layers[11].mlp.down_proj.weight[507], weights["model.layers.11.mlp.down_proj.weight"][507] * 0.5
    )
    unfold(saved)
    assert torch.equal(model.model.layers[11].mlp.down_proj.weight, weights["model.layers.11.mlp.down_proj.weight"])


@torch.no_grad()
def test_row_masks_equal_one_mask_per_forward(embedded):
    model, tok = embedded.model, embedded.tokenizer
    ids = _ids(tok, PROMPTS[3])
    rows = [[], CRITICAL, SEVERAL[1:], SEVERAL]
    with row_masked(model, rows):
        batched = model(ids.expand(len(rows), -1)).logits
    for i, row in enumerate(rows):
        with masked(model, row):
            single = model(ids).logits
        torch.testing.assert_close(batched[i], single[0], rtol=0, atol=5e-4)  # GEMM batch rounding only
    assert (batched[0] - batched[1]).abs().max().item() > 1.0  # the rows really are masked differently


def test_tuple_outputs_are_masked(tiny_llama):
    """A module returning a tuple (here a whole decoder layer) has its first element masked."""
    ids = torch.tensor([[1, 2, 3, 4]])
    seen = []
    layer = tiny_llama.model.layers[0]
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with masked(tiny_llama, [Neuron("model.layers.0", 3)]):
        h2 = layer.register_forward_hook(lambda m, i, o: seen.append(o))
        tiny_llama(ids)
        h2.remove()
    handle.remove()
    out = seen[-1][0] if isinstance(seen[-1], tuple) else seen[-1]
    assert torch.all(out[..., 3] == 0)


def test_bad_neurons_are_refused(embedded):
    model = embedded.model
    with pytest.raises(AchillesError, match="unknown module"):
        with masked(model, [Neuron("model.layers.99.mlp.down_proj", 1)]):
            pass
    size = output_sizes(model, ["model.layers.11.mlp.down_proj"])["model.layers.11.mlp.down_proj"]
    with pytest.raises(AchillesError, match="out of range"):
        with masked(model, [Neuron("model.layers.11.mlp.down_proj", size)]):
            pass
    with pytest.raises(AchillesError, match="cannot fold"):
        fold(model, [Neuron("model.embed_tokens", 0)])  # an embedding: row c is a token, not a channel
