"""Fold is exact for every module kind it accepts (Linear, transformers' Conv1D, LayerNorm/RMSNorm incl. the
Gemma ``1 + w`` gain), refuses the others, and is transactional. Tiny random models: only shapes matter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import Neuron
from lm_eval_achilles.mask.masking import fold, folded, masked, unfold


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial norm gains and biases, so a wrong fold shows
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return model


def tiny_gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        sliding_window=8,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():  # Gemma initialises its norm gains w at 0 (gain 1 + w); make them non-trivial
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.5)
    return model


IDS = torch.tensor([[3, 17, 42, 8, 25, 11, 5]])

#: Conv1D [in=16, out=48/64] channels beyond in_features (the old row fold raised IndexError there),
#: a Conv1D channel inside both ranges (the old fold zeroed an input row), LayerNorm weight+bias
GPT2_NEURONS = [
    Neuron("transformer.h.0.mlp.c_fc", 40),
    Neuron("transformer.h.0.attn.c_attn", 5),
    Neuron("transformer.h.1.attn.c_attn", 33),
    Neuron("transformer.h.1.mlp.c_proj", 3),
    Neuron("transformer.h.0.ln_2", 2),
    Neuron("transformer.h.1.ln_1", 7),
]


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before):
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@torch.no_grad()
@pytest.mark.parametrize("scale", [0.0, -0.5])
def test_fold_equals_hooks_on_gpt2_conv1d_and_layernorm(scale):
    model = tiny_gpt2()
    before, clean = _params(model), model(IDS).logits
    with masked(model, GPT2_NEURONS, scale=scale):
        hooked = model(IDS).logits
    with folded(model, GPT2_NEURONS, scale=scale):
        fold_logits = model(IDS).logits
    assert (hooked - clean).abs().max() > 1e-3  # the mask changes the output ...
    torch.testing.assert_close(fold_logits, hooked, rtol=1e-5, atol=1e-6)  # ... and fold does exactly that
    _assert_unchanged(model, before)  # restored bit for bit


@torch.no_grad()
def test_fold_writes_the_conv1d_column_not_a_row():
    model = tiny_gpt2()
    w = model.transformer.h[0].mlp.c_fc.weight  # [in 16, out 64]
    old = w.detach().clone()
    saved = fold(model, [Neuron("transformer.h.0.mlp.c_fc", 40)])
    assert torch.all(w[:, 40] == 0) and float(model.transformer.h[0].mlp.c_fc.bias[40]) == 0.0
    keep = [c for c in range(w.shape[1]) if c != 40]
    assert torch.equal(w[:, keep], old[:, keep])
    unfold(saved)
    assert torch.equal(w, old)


@torch.no_grad()
@pytest.mark.parametrize("scale", [0.0, 0.25])
def test_fold_equals_hooks_on_gemma3_offset_norms(scale):
    model = tiny_gemma3()
    neurons = [
        Neuron("model.layers.0.post_attention_layernorm", 3),
        Neuron("model.layers.1.post_attention_layernorm", 9),
        Neuron("model.layers.0.self_attn.q_norm", 2),
        Neuron("model.layers.1.mlp.down_proj", 5),
    ]
    before, clean = _params(model), model(IDS).logits
    with masked(model, neurons, scale=scale):
        hooked = model(IDS).logits
    with folded(model, neurons, scale=scale):
        fold_logits = model(IDS).logits
        if scale == 0.0:  # gain 1 + w = 0 exactly
            assert float(model.model.layers[0].post_attention_layernorm.weight[3]) == -1.0
    assert (hooked - clean).abs().max() > 1e-3
    torch.testing.assert_close(fold_logits, hooked, rtol=1e-5, atol=1e-6)
    _assert_unchanged(model, before)


def test_fold_refuses_other_kinds_and_leaves_every_module_unmodified():
    model = tiny_gpt2()
    before = _params(model)
    # the Conv1D comes first: it is planned but nothing is written before the activation is refused
    bad = [Neuron("transformer.h.0.mlp.c_fc", 3), Neuron("transformer.h.0.mlp.act", 0)]
    with pytest.raises(AchillesError, match=r"cannot fold a mask into 'transformer.h.0.mlp.act'.*apply=hooks"):
        fold(model, bad)
    _assert_unchanged(model, before)
    with pytest.raises(AchillesError, match="cannot fold a mask into 'transformer.wte'"):
        fold(model, [Neuron("transformer.wte", 1)])  # an embedding: row c is a token, not a channel
    _assert_unchanged(model, before)
    with torch.no_grad(), masked(model, bad):  # hooks still mask what fold refuses
        assert torch.isfinite(model(IDS).logits).all()


class OddRMSNorm(nn.Module):
    """A norm-named module whose gain is neither w nor 1 + w: no fold reproduces its masked output."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return x * self.weight + 1.0


def test_fold_failing_its_exactness_check_restores_what_was_already_written():
    model = tiny_gpt2()
    model.transformer.h[1].ln_2 = OddRMSNorm(16)
    before = _params(model)
    neurons = [
        Neuron("transformer.h.0.mlp.c_fc", 3),
        Neuron("transformer.h.0.ln_2", 1),
        Neuron("transformer.h.1.ln_2", 4),
    ]
    with pytest.raises(AchillesError, match="does not reproduce the hooked output"):
        fold(model, neurons)
    _assert_unchanged(model, before)  # the Conv1D and the LayerNorm folded first are back


@torch.no_grad()
@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_fold_of_the_gated_mlp_activation_equals_hooks_on_the_embedded_model(embedded, scale):
    model = embedded.model
    neurons = [Neuron("model.layers.4.mlp.act_fn", 11), Neuron("model.layers.9.mlp.act_fn", 300)]
    ids = torch.tensor([[1, 415, 3214, 282, 4649, 314, 2580, 28]])
    before, clean = _params(model), model(ids).logits
    with masked(model, neurons, scale=scale):
        hooked = model(ids).logits
    with folded(model, neurons, scale=scale):
        fold_logits = model(ids).logits
        up = model.model.layers[4].mlp.up_proj.weight
        assert torch.equal(up[11], before["model.layers.4.mlp.up_proj.weight"][11] * scale)
    assert (hooked - clean).abs().max() > 1e-3
    if scale == 0.0:
        assert torch.equal(fold_logits, hooked)  # act(g) * 0 * u == act(g) * (0 * u): bit for bit
    torch.testing.assert_close(fold_logits, hooked, rtol=1e-5, atol=1e-5)
    _assert_unchanged(model, before)


def test_fold_refuses_a_parameter_shared_between_modules(embedded):
    model = embedded.model  # tied: lm_head.weight is model.embed_tokens.weight
    assert model.lm_head.weight is model.model.embed_tokens.weight
    before = _params(model)
    with pytest.raises(AchillesError, match=r"'lm_head'.*shared by lm_head, model.embed_tokens.*apply=hooks"):
        fold(model, [Neuron("model.layers.0.mlp.down_proj", 1), Neuron("lm_head", 5)])
    _assert_unchanged(model, before)


@torch.no_grad()
def test_norm_gain_variant_is_decided_exactly_in_bf16_with_a_large_gain():
    """One large gain in bf16 made the old tolerance check accept the wrong gain form; now the masked
    channel is exactly beta * hooked (0) for both the (1 + w) Gemma norm and a plain w norm, every trial."""
    from conftest import make_tiny_llama

    gemma = tiny_gemma3().to(torch.bfloat16)
    llama = make_tiny_llama().to(torch.bfloat16)
    for trial in range(20):
        for model, name in (
            (gemma, "model.layers.0.post_attention_layernorm"),
            (llama, "model.layers.0.input_layernorm"),
        ):
            norm = model.get_submodule(name)
            c = trial % 16
            norm.weight[(c + 1) % 16] = 300.0 + trial  # one large gain elsewhere dominates the output
            x = torch.randn(3, 16, dtype=torch.bfloat16)
            with folded(model, [Neuron(name, c)]):
                out = norm(x)
            with masked(model, [Neuron(name, c)]):
                hooked = norm(x)
            assert torch.equal(out[..., c], torch.zeros_like(out[..., c])), (trial, name)
            keep = [i for i in range(16) if i != c]
            assert torch.equal(out[..., keep], hooked[..., keep]), (trial, name)
