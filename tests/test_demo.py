"""A reduced ``achilles demo`` end to end on the real embedded model: locate (few noise samples) ->
report -> lm-eval original vs masked on two fixture tasks -> comparison, plots and the printed table."""

from __future__ import annotations

import json

import pytest

from lm_eval_achilles.cli import main

pytestmark = pytest.mark.slow


def test_reduced_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--tasks",
            "achilles_mmlu_pro,achilles_wikitext",
            "--limit",
            "2",
            "--max-gen-toks",
            "6",
            "--samples",
            "10",
            "--max-new-tokens",
            "6",
            "--bootstrap-iters",
            "300",
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed

    mask = json.loads((out / "mask.json").read_text())
    assert mask["format"] == "achilles-mask/1" and mask["critical"]["size"] >= 1
    assert mask["critical"]["delta"] >= 1.0

    comp = json.loads((out / "compare" / "comparison.json").read_text())
    rows = {(r["task"], r["metric"]): r for r in comp["rows"]}
    assert {
        ("achilles_mmlu_pro", "acc"),
        ("achilles_mmlu_pro", "meaningless_rate"),
        ("achilles_wikitext", "token_perplexity"),
    } <= rows.keys()
    acc = rows[("achilles_mmlu_pro", "acc")]
    assert acc["n"] == 2 and acc["test"]["name"] == "mcnemar-exact"
    ppl = rows[("achilles_wikitext", "token_perplexity")]
    assert ppl["n"] == 2 and ppl["test"]["name"] == "paired-bootstrap" and ppl["scale"] == "log10"
    # the critical neuron(s) wreck perplexity on held-out text, not only on the probe
    assert float(ppl["masked"]) > 10 * float(ppl["original"])
    assert comp["original"]["achilles_mask"]["masked"] is False
    assert comp["masked"]["achilles_mask"]["n_channels"] == len(mask["neurons"])
    # separate output folders and caches per condition
    assert (out / "compare" / "original").is_dir() and (out / "compare" / "masked").is_dir()
    assert sorted(p.name for p in (out / "compare" / "cache").iterdir()) == ["masked_rank0.db", "original_rank0.db"]

    for rel in (
        "report/phase_transition.png",
        "report/layer_module.png",
        "report/answer_token.png",
        "compare/comparison.png",
        "report/report.md",
        "compare/comparison.md",
        "demo.md",
    ):
        assert (out / rel).stat().st_size > 200, rel
    assert (
        "achilles_wikitext" in printed and "plots:" in printed and str(out / "report" / "answer_token.png") in printed
    )
    demo_md = (out / "demo.md").read_text()
    assert "| achilles_wikitext | token_perplexity ↓ | 2 |" in demo_md
    assert "generation capped at 6 new tokens" in demo_md


def test_demo_refuses_bad_input(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--mask", str(tmp_path / "none.json")]) == 2
    assert "mask file not found" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path), "--data-dir", str(tmp_path / "nodata")]) == 2
    assert "is not a folder" in capsys.readouterr().err
