"""Bad input through the ``achilles`` command: one clear error line and exit code 2."""

from __future__ import annotations

import json

import pytest

from lm_eval_achilles.cli import main
from lm_eval_achilles.locator.mask_file import FORMAT


def _mask_doc(fingerprint, neurons):
    return {
        "format": FORMAT,
        "model": {"name_or_path": "embedded", "architecture": "LlamaForCausalLM", "fingerprint": fingerprint},
        "locator": {"method": "perturbation"},
        "ranking": [{"module": m, "channel": c, "score": 1.0} for m, c in neurons],
        "critical": {"size": len(neurons), "baseline_ppl": 1.0, "masked_ppl": 100.0, "delta": 2.0, "curve": []},
        "neurons": [{"module": m, "channel": c} for m, c in neurons],
    }


@pytest.fixture(scope="module")
def fingerprint(embedded):
    from lm_eval_achilles.models.loading import fingerprint as fp

    return fp(embedded.model)


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    errors = [line for line in err if line.startswith("achilles: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "malformed JSON"),
        (json.dumps({"format": "something/else"}), "format must be"),
        (json.dumps({**_mask_doc("x", [("a", 1)]), "neurons": [{"module": "a"}]}), "missing key 'channel'"),
        (
            json.dumps({**_mask_doc("x", [("a", 1)]), "neurons": [{"module": "a", "channel": "7"}]}),
            "channel' must be int",
        ),
    ],
)
def test_malformed_mask_files(tmp_path, capsys, content, message):
    path = tmp_path / "mask.json"
    path.write_text(content)
    assert message in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "out")])


def test_missing_mask_file(tmp_path, capsys):
    assert "mask file not found" in _error(
        capsys, ["export", "--mask", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]
    )


def test_mask_for_another_model(tmp_path, capsys):
    path = tmp_path / "mask.json"
    path.write_text(json.dumps(_mask_doc("0123456789abcdef", [("model.layers.11.mlp.down_proj", 507)])))
    assert "another model" in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "o")])


def test_unknown_module_and_channel_out_of_range(tmp_path, capsys, fingerprint):
    path = tmp_path / "mask.json"
    path.write_text(json.dumps(_mask_doc(fingerprint, [("model.layers.11.mlp.nonexistent", 1)])))
    assert "unknown module" in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "o")])
    path.write_text(json.dumps(_mask_doc(fingerprint, [("model.layers.11.mlp.down_proj", 576)])))
    assert "out of range" in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "o")])


def test_locate_bad_input(tmp_path, capsys):
    out = str(tmp_path / "m.json")
    assert "probe text is empty" in _error(capsys, ["locate", "--text", "   ", "--out", out, "--quiet"])
    assert "no candidate module" in _error(capsys, ["locate", "--modules", "*nothing*", "--out", out, "--quiet"])
    assert "text file not found" in _error(capsys, ["locate", "--text-file", str(tmp_path / "x.txt"), "--out", out])
    assert "unknown method" in _error(capsys, ["locate", "--method", "telepathy", "--out", out, "--quiet"])
    assert not (tmp_path / "m.json").exists()


def test_locate_writes_mask_and_summary(tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["locate", "--samples", "20", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "critical set:" in printed and "model.layers.11.mlp.down_proj" in printed
    doc = json.loads(out.read_text())
    assert doc["critical"]["delta"] >= 1.0 and doc["locator"]["samples"] == 20
