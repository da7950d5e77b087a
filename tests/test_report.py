"""``achilles report``: layer/module bookkeeping, the mask-only Figure 2, and the model-based Figure 1 and
before/after table on the real embedded model."""

from __future__ import annotations

import json

import pytest

from lm_eval_achilles.cli import main
from lm_eval_achilles.mask.mask_file import Critical, MaskFile, ModelInfo, Neuron, RankedNeuron, save_mask
from lm_eval_achilles.paper.report import build_report, chat_prompt, layer_module_counts, layer_of, module_kind

#: The embedded model's critical neuron (see tests of locate), followed by arbitrary further entries.
CRITICAL = ("model.layers.11.mlp.down_proj", 507)
RANKING = [CRITICAL, ("model.layers.29.mlp.down_proj", 10), ("model.layers.0.self_attn.o_proj", 3)]


def make_mask(fingerprint="x", size=1):
    ranking = [RankedNeuron(m, c, 10.0 - i) for i, (m, c) in enumerate(RANKING)]
    crit = Critical(
        size=size,
        baseline_ppl=111.0,
        masked_ppl=1.9e6,
        delta=4.23,
        curve=[[0, 111.0], [1, 1.9e6], [2, 1.4e6], [3, 1.5e6]],
    )
    return MaskFile(
        model=ModelInfo("embedded", "LlamaForCausalLM", fingerprint),
        locator={"method": "perturbation", "epsilon": 1.0, "scale": 0.0},
        ranking=ranking,
        critical=crit,
        neurons=[r.neuron for r in ranking[:size]],
    )


def test_layer_and_module_parsing():
    assert layer_of("model.layers.11.mlp.down_proj") == 11
    assert layer_of("transformer.h.3.mlp.c_proj") == 3
    assert layer_of("model.norm") is None
    assert module_kind("model.layers.11.mlp.down_proj") == "mlp.down_proj"
    assert module_kind("model.norm") == "model.norm"
    counts = layer_module_counts(
        [
            Neuron("model.layers.1.mlp.down_proj", 1),
            Neuron("model.layers.1.mlp.down_proj", 2),
            Neuron("model.layers.1.self_attn.q_proj", 1),
            Neuron("model.layers.1.mlp.down_proj", 1),
            Neuron("lm_head", 0),
        ]
    )
    assert counts == {1: {"mlp.down_proj": 2, "self_attn.q_proj": 1}, -1: {"lm_head": 1}}


def test_mask_only_report(tmp_path, capsys):
    mask_path = save_mask(make_mask(size=2), tmp_path / "mask.json")
    assert main(["report", str(mask_path), "--out", str(tmp_path / "rep"), "--no-model"]) == 0
    out = tmp_path / "rep"
    for name in ("phase_transition.png", "layer_module.png", "report.md", "report.json"):
        assert (out / name).stat().st_size > 500, name
    md = (out / "report.md").read_text()
    assert "![phase transition](phase_transition.png)" in md
    assert "**Critical set: 2 neuron(s)**" in md
    assert "| 2 | `model.layers.29.mlp.down_proj` | 29 | 10 |" in md
    data = json.loads((out / "report.json").read_text())
    assert data["layer_module"] == {"11": {"mlp.down_proj": 1}, "29": {"mlp.down_proj": 1}}
    assert data["n_layers"] == 30  # deepest layer in the ranking + 1 (no model loaded)
    assert "figure1" not in data


def test_report_rejects_bad_mask(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{}")
    assert main(["report", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r"), "--no-model"]) == 2
    assert "format must be" in capsys.readouterr().err


@pytest.mark.slow
def test_figure1_and_responses_on_the_embedded_model(embedded, tmp_path):
    from lm_eval_achilles.models.loading import fingerprint

    mask = make_mask(fingerprint(embedded.model))
    paths = build_report(
        mask,
        tmp_path,
        loaded=embedded,
        model_name="SmolLM2",
        extra_steps=1,
        max_new_tokens=6,
        questions=("What is the capital of France?",),
    )
    assert paths["answer_token"].stat().st_size > 1000
    data = json.loads(paths["json"].read_text())
    steps = data["figure1"]["steps"]
    assert [s["n"] for s in steps] == [0, 1, 2]
    assert data["figure1"]["answer_token"] == " Paris"
    # before masking the model answers Paris; the one critical neuron destroys it (paper, Figure 1)
    assert steps[0]["rank"] == 1 and steps[0]["prob"] > 0.5
    assert steps[1]["rank"] > 100 and steps[1]["prob"] < 1e-3
    assert steps[1]["neuron"] == list(CRITICAL)
    (row,) = data["responses"]["rows"]
    assert "Paris" in row["original"]
    assert "Paris" not in row["masked"]
    md = paths["md"].read_text()
    assert "![answer token](answer_token.png)" in md and "| What is the capital of France? |" in md
    assert chat_prompt(embedded.tokenizer, "Q?", "A").endswith("A")
    assert md.count("through the chat template") == 2  # Figure 1 and the responses say how they prompted


def test_report_says_how_a_model_without_chat_template_was_prompted(embedded):
    """A base model (no chat template, e.g. Gemma-3-270M) is prompted with ``Question: ...\\nAnswer:``;
    the report must say so instead of claiming the chat template."""
    import copy

    from lm_eval_achilles.paper.report import prompt_format

    base = copy.deepcopy(embedded.tokenizer)
    base.chat_template = None
    assert chat_prompt(base, "Q?", "A") == "Question: Q?\nAnswer: A"
    assert "no chat template" in prompt_format(base)
    assert prompt_format(embedded.tokenizer) == "the chat template"
