"""``achilles finetune``: only the selected neurons' slices are trained (everything else bit-identical),
the optimizer holds state for those slices only, the ``achilles-delta/1`` artifact round-trips, merges,
exports and loads through lm-eval's model argument, and a delta for another model is refused."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_llama

from lm_eval_achilles.cli import main
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.finetune import baselines, data, delta, train
from lm_eval_achilles.finetune.neurons import owned_slices
from lm_eval_achilles.mask.mask_file import Neuron

#: Linear rows of three kinds and one norm gain (the parametrisation path).
NEURONS = [
    Neuron("model.layers.3.mlp.down_proj", 17),
    Neuron("model.layers.3.mlp.down_proj", 400),
    Neuron("model.layers.7.self_attn.o_proj", 5),
    Neuron("model.layers.1.mlp.gate_proj", 1000),
    Neuron("model.layers.5.post_attention_layernorm", 33),
]


def _items(n=8, seed=0):
    return data.gsm_symbolic({"train": n}, seed=seed)["train"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    (root / "train.jsonl").write_text("".join(json.dumps(d) + "\n" for d in _items()))
    (root / "neurons.json").write_text(json.dumps([[n.module, n.channel] for n in NEURONS]))
    return root


@pytest.fixture(scope="module")
def base():
    from lm_eval_achilles.models.loading import load_model

    loaded = load_model(None, dtype="float32", device="cpu")
    baselines.freeze(loaded.model)
    return loaded


@pytest.fixture(scope="module")
def trained(base):
    """Three steps on the real embedded model with the row-delta attached."""
    examples = [data._example(d, "x") for d in _items()]
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    rows = delta.RowDelta(base.model, NEURONS)
    opt: list = []
    cfg = train.TrainConfig(steps=3, lr=1e-2, batch_size=2, progress=False)
    with rows.attached():
        result = train.train(base.model, base.tokenizer, examples, rows.parameters(), cfg, optimizer_out=opt)
    return rows, before, opt[0], result


def _logits(model):
    ids = torch.tensor([list(range(1, 40))])
    with torch.no_grad():
        return model(input_ids=ids).logits


def _close(a, b, rel=5e-5):
    """Equal up to float32 rounding: the largest difference within ``rel`` of the largest logit (a row
    computed alone vs inside the full matmul differs in the last bits, and 30 layers amplify that to ~1e-5;
    a wrong row would differ by O(1))."""
    err = float((a - b).abs().max() / b.abs().max())
    assert err <= rel, err


def test_base_untouched_and_optimizer_holds_only_the_slices(base, trained):
    rows, before, opt, result = trained
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "training wrote a base parameter"
    assert all(p.grad is None for p in base.model.parameters())
    per_channel = {s.key: base.model.get_parameter(s.key) for s in rows.slices}
    expected = sum(
        len(s.channels) * (per_channel[s.key].numel() // per_channel[s.key].shape[s.dim]) for s in rows.slices
    )
    assert rows.trainable_count() == expected
    state = sum(t.numel() for st in opt.state.values() for t in st.values() if t.dim() > 0)
    assert state == 2 * rows.trainable_count()
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    moved = [
        not torch.equal(c, before[f"{s.key}"].index_select(s.dim, torch.tensor(s.channels)))
        for s, c in zip(rows.slices, rows.copies)
    ]
    assert all(moved), "a selected slice did not change"


def test_merge_changes_only_the_slices_and_matches_hooks(base, trained):
    rows, before, _opt, _ = trained
    with rows.attached():
        hooked = _logits(base.model)
    plain = _logits(base.model)
    assert not torch.allclose(hooked, plain)
    rows.merge()
    try:
        merged = _logits(base.model)
        _close(merged, hooked)
        after = base.model.state_dict()
        owned = {}
        for s in rows.slices:
            owned.setdefault(s.key, []).append(s)
        for name, t in after.items():
            mask = torch.zeros_like(t, dtype=torch.bool)
            for s in owned.get(name, []):
                mask.index_fill_(s.dim, torch.tensor(s.channels), True)
            assert torch.equal(t[~mask], before[name][~mask]), name
            if name in owned:
                assert not torch.equal(t[mask], before[name][mask]), name
    finally:
        base.model.load_state_dict(before)


def test_delta_round_trip_and_refusal(base, trained, tmp_path):
    from lm_eval_achilles.models.loading import weights_digest

    rows, _before, _opt, result = trained
    info = {"base_weights_digest": weights_digest(base.model), "steps": 3, "final_loss": result.final_loss}
    delta.save_delta(tmp_path / "d", rows, base, dict(info))
    meta = json.loads((tmp_path / "d" / delta.META).read_text())
    assert meta["format"] == "achilles-delta/1" and meta["trainable_values"] == rows.trainable_count()
    loaded = delta.load_delta(tmp_path / "d")
    again = loaded.row_delta(base.model)
    with rows.attached():
        want = _logits(base.model)
    with again.attached():
        got = _logits(base.model)
    assert torch.equal(got, want)
    # same tensors -> same bytes
    delta.save_delta(tmp_path / "e", again, base, dict(info))
    assert (tmp_path / "e" / delta.TENSORS).read_bytes() == (tmp_path / "d" / delta.TENSORS).read_bytes()
    with pytest.raises(AchillesError, match="trained on another model"):
        loaded.check_model(make_tiny_llama())
    p = base.model.model.embed_tokens.weight
    old = p.data[0, 0].item()
    p.data[0, 0] += 1.0  # same architecture, other weights
    try:
        with pytest.raises(AchillesError, match="weights digest"):
            loaded.apply(base.model)
    finally:
        p.data[0, 0] = old
    (tmp_path / "d" / delta.TENSORS).write_bytes(b"x")
    with pytest.raises(AchillesError, match="does not match the hash"):
        delta.load_delta(tmp_path / "d")


@pytest.fixture(scope="module")
def cli_delta(workdir):
    out = workdir / "delta"
    argv = ["finetune", "--neurons", str(workdir / "neurons.json"), "--data", str(workdir / "train.jsonl")]
    assert main([*argv, "--steps", "2", "--lr", "1e-2", "--batch-size", "2", "--out", str(out), "--quiet"]) == 0
    return out


def test_cli_finetune_writes_a_delta_and_refuses_to_overwrite(cli_delta, workdir, capsys):
    meta = json.loads((cli_delta / delta.META).read_text())
    assert meta["steps"] == 2 and len(meta["losses"]) == 2
    assert meta["data"]["sha256"] == data.file_sha256(workdir / "train.jsonl")
    assert [[n["module"], n["channel"]] for n in meta["neurons"]] == [[n.module, n.channel] for n in NEURONS]
    argv = ["finetune", "--neurons", str(workdir / "neurons.json"), "--data", str(workdir / "train.jsonl")]
    assert main([*argv, "--steps", "1", "--lr", "1e-2", "--out", str(cli_delta)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_delta_model_arg_and_export_give_the_merged_logits(cli_delta, base, tmp_path):
    from transformers import AutoModelForCausalLM

    from lm_eval_achilles.harness.lm_model import AchillesMaskedLM

    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    delta.load_delta(cli_delta).apply(base.model)
    try:
        want = _logits(base.model)
    finally:
        base.model.load_state_dict(before)
    lm = AchillesMaskedLM(pretrained=None, delta=str(cli_delta), device="cpu", dtype="float32", batch_size=1)
    assert lm.get_model_info()["achilles_delta"]["n_neurons"] == len(NEURONS)
    torch.testing.assert_close(_logits(lm.model), want, rtol=0, atol=0)
    del lm
    assert main(["export", "--delta", str(cli_delta), "--out", str(tmp_path / "x"), "--device", "cpu"]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "x", dtype=torch.float32)
    _close(_logits(exported), want)
    assert json.loads((tmp_path / "x" / "achilles-export.json").read_text())["delta"]["steps"] == 2


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()


@pytest.mark.parametrize(
    "make, neurons",
    [
        (
            make_tiny_llama,
            [
                ("model.layers.0.mlp.down_proj", 3),
                ("model.layers.1.self_attn.o_proj", 7),
                ("model.layers.1.input_layernorm", 2),
            ],
        ),
        (
            _tiny_gpt2,
            [("transformer.h.0.mlp.c_proj", 3), ("transformer.h.1.attn.c_attn", 40), ("transformer.h.0.ln_2", 5)],
        ),
    ],
    ids=["llama", "gpt2-conv1d-bias"],
)
def test_row_delta_equals_gradient_masked_full_training(make, neurons):
    """The row-delta is full fine-tuning with the gradient masked to the owned slices (AdamW, wd 0)."""
    neurons = [Neuron(m, c) for m, c in neurons]
    ids = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :4] = -100
    att = torch.ones_like(ids)

    a = make()
    baselines.freeze(a)
    rows = delta.RowDelta(a, neurons)
    opt = torch.optim.AdamW(rows.parameters(), lr=1e-2, weight_decay=0.0)
    with rows.attached():
        for _ in range(5):
            train.answer_loss(a, ids, att, labels).backward()
            opt.step()
            opt.zero_grad()
    rows.merge()

    b = make()
    params = baselines.full_parameters(b)
    masks = {}
    for s in owned_slices(b, neurons):
        p = b.get_parameter(s.key)
        m = masks.setdefault(s.key, torch.zeros_like(p, dtype=torch.bool))
        m.index_fill_(s.dim, torch.tensor(s.channels), True)
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    named = dict(b.named_parameters())
    for _ in range(5):
        train.answer_loss(b, ids, att, labels).backward()
        for name, p in named.items():
            p.grad = p.grad * masks[name] if name in masks else None
        opt.step()
        opt.zero_grad()
    for name, p in a.named_parameters():
        torch.testing.assert_close(p, named[name], rtol=1e-4, atol=1e-5, msg=name)
    changed = sum(int((p != make().get_parameter(n)).sum()) for n, p in a.named_parameters())
    assert changed == rows.trainable_count()


def test_lora_baseline_same_loop(base):
    examples = [data._example(d, "x") for d in _items(4)]
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    peft_model, params = baselines.lora_model(base.model, r=1, targets=("o_proj", "down_proj"))
    opt: list = []
    try:
        cfg = train.TrainConfig(steps=1, lr=1e-3, batch_size=2, progress=False)
        train.train(peft_model, base.tokenizer, examples, params, cfg, optimizer_out=opt)
        n = sum(p.numel() for p in params)
        cfg_model = base.model.config
        per_layer = (cfg_model.hidden_size * 2) + (cfg_model.intermediate_size + cfg_model.hidden_size)
        assert n == per_layer * cfg_model.num_hidden_layers
        assert sum(t.numel() for st in opt[0].state.values() for t in st.values() if t.dim() > 0) == 2 * n
    finally:
        peft_model.unload()
        base.model.load_state_dict(before)
    baselines.freeze(base.model)


def test_read_jsonl_errors_name_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    with pytest.raises(AchillesError, match="data file not found"):
        data.read_jsonl(p)
    p.write_text("\n  \n")
    with pytest.raises(AchillesError, match="is empty"):
        data.read_jsonl(p)
    p.write_text('{"prompt": "a", "answer": "b"}\nnot json\n')
    with pytest.raises(AchillesError, match=r"d.jsonl:2: not JSON"):
        data.read_jsonl(p)
    p.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(AchillesError, match=r"d.jsonl:2: missing or empty field\(s\) answer"):
        data.read_jsonl(p)
    p.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    assert data.read_jsonl(p)[0].answer == "yo"


def test_gsm_symbolic_splits_are_disjoint():
    splits = data.gsm_symbolic({"train": 200, "validation": 20, "test_in": 40, "test_heldout": 40})
    seen = [{d["prompt"] for d in v} for v in splits.values()]
    assert sum(map(len, seen)) == len(set().union(*seen)) == 300
    held = {d["template"] for d in splits["test_heldout"]}
    trained_on = {d["template"] for k in ("train", "validation", "test_in") for d in splits[k]}
    assert min(held) >= data.HELDOUT_FROM > max(trained_on)
    # the chain of thought ends "#### N" (sometimes written 2400.0 for 2400)
    assert all(float(d["answer"].rsplit("####", 1)[1]) == float(d["final"]) for d in splits["train"])
    assert data.gsm_symbolic({"train": 5}, seed=3) == data.gsm_symbolic({"train": 5}, seed=3)


def test_keystone_neurons_come_from_the_keystone_selection(embedded):
    """``--neurons keystone`` asks the keystone ranker (generated tokens, top rho, intersection) for N neurons."""
    from lm_eval_achilles.finetune.neurons import keystone_neurons

    mods = [n for n, _ in embedded.model.named_modules() if n.endswith("mlp.down_proj")]
    got = keystone_neurons(embedded, 8, mods)
    assert len(got) == 8 and len(set(got)) == 8 and all(n.module in mods for n in got)
