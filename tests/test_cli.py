"""Bad input through the ``achilles`` command: one clear error line and exit code 2."""

from __future__ import annotations

import json

import pytest
from conftest import mask_doc

from lm_eval_achilles.cli import main


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
        (json.dumps({**mask_doc("x", [("a", 1)], curve=()), "neurons": [{"module": "a"}]}), "missing key 'channel'"),
        (
            json.dumps({**mask_doc("x", [("a", 1)], curve=()), "neurons": [{"module": "a", "channel": "7"}]}),
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
    path.write_text(json.dumps(mask_doc("0123456789abcdef", [("model.layers.11.mlp.down_proj", 507)], curve=())))
    assert "another model" in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "o")])


def test_unknown_module_and_channel_out_of_range(tmp_path, capsys, fingerprint):
    path = tmp_path / "mask.json"
    path.write_text(json.dumps(mask_doc(fingerprint, [("model.layers.11.mlp.nonexistent", 1)], curve=())))
    assert "unknown module" in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "o")])
    path.write_text(json.dumps(mask_doc(fingerprint, [("model.layers.11.mlp.down_proj", 576)], curve=())))
    assert "out of range" in _error(capsys, ["export", "--mask", str(path), "--out", str(tmp_path / "o")])


def test_locate_bad_input(tmp_path, capsys):
    out = str(tmp_path / "m.json")
    assert "--text: must not be empty" in _error(capsys, ["locate", "--text", "   ", "--out", out, "--quiet"])
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


# ---------------------------------------------------------------- exit codes (docs/cli.md, "Exit codes")


def test_exit_code_1_when_locate_finds_no_critical_set(tmp_path, capsys):
    """0 = found, 1 = ran fine but no critical set within the step cap (mask still written), 2 = bad
    input or crash: CI can tell a robust model from a broken run."""
    out = tmp_path / "m.json"
    argv = ["locate", "--samples", "2", "--modules", "model.layers.0.mlp.down_proj", "--ranking-size", "5"]
    code = main([*argv, "--max-steps", "2", "--epsilon", "50", "--out", str(out), "--quiet"])
    assert code == 1, capsys.readouterr()
    doc = json.loads(out.read_text())
    assert doc["critical"]["size"] == 0 and doc["neurons"] == [] and len(doc["ranking"]) == 5


def test_exit_code_2_for_a_crash_with_its_traceback(monkeypatch, capsys):
    import lm_eval_achilles.cli.check as check

    def crash(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(check, "run", crash)
    assert main(["check", "whatever.json"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "achilles: error: crashed with RuntimeError: boom"


def test_exit_codes_of_help_interrupt_and_no_command(monkeypatch, capsys):
    import lm_eval_achilles.cli.check as check

    assert main(["--help"]) == 0
    assert main(["locate", "--help"]) == 0
    assert main([]) == 2

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "run", interrupted)
    assert main(["check", "x.json"]) == 130
    capsys.readouterr()


def test_compare_overwrite_clears_an_earlier_run_before_evaluating(tmp_path, monkeypatch, embedded_path):
    """--overwrite removes the earlier results *and* response caches (keyed by request alone, they would
    serve the earlier model's answers), after every check and right before the first lm-eval run."""
    import lm_eval

    from lm_eval_achilles.models.loading import fingerprint, load_skeleton

    class Started(BaseException):
        pass

    def started(*_a, **_k):
        raise Started

    monkeypatch.setattr(lm_eval, "simple_evaluate", started)
    mask = tmp_path / "mask.json"
    mask.write_text(
        json.dumps(mask_doc(fingerprint(load_skeleton(None)), [("model.layers.11.mlp.down_proj", 507)], curve=()))
    )
    out = tmp_path / "cmp"
    for rel in ("original/x/results_1.json", "cache/original_rank0.db", "masked/x/results_1.json"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("{}")
    argv = ["compare", "--mask", str(mask), "--tasks", "achilles_mmlu_pro", "--out", str(out)]
    assert main(argv) == 2  # refused: an earlier run is there
    assert (out / "cache" / "original_rank0.db").is_file()
    with pytest.raises(Started):
        main([*argv, "--overwrite"])
    assert not (out / "masked").exists() and not (out / "cache" / "original_rank0.db").exists()
    assert not list((out / "original").rglob("results_*.json"))  # the original run had begun (its folder)


def test_compare_allow_fingerprint_mismatch_passes_the_precheck_and_reaches_lm_eval(tmp_path, monkeypatch, capsys):
    import lm_eval

    seen = {}

    class Started(BaseException):
        pass

    def started(*_a, model_args=None, **_k):
        seen.update(model_args)
        raise Started

    monkeypatch.setattr(lm_eval, "simple_evaluate", started)
    mask = tmp_path / "other.json"
    mask.write_text(json.dumps(mask_doc("0123456789abcdef", [("model.layers.11.mlp.down_proj", 507)], curve=())))
    argv = ["compare", "--mask", str(mask), "--tasks", "achilles_mmlu_pro", "--out", str(tmp_path / "c")]
    assert main(argv) == 2 and "mask was made for another model" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="mismatch was explicitly allowed"), pytest.raises(Started):
        main([*argv, "--allow-fingerprint-mismatch"])
    assert seen["allow_fingerprint_mismatch"] is True and seen["top_n"] == 0


def test_demo_loads_the_model_given_with_model(tmp_path, capsys):
    """``achilles demo --model X`` loads X, not the embedded default (which would load and run on)."""
    missing = tmp_path / "no-such-model"
    assert main(["demo", "--model", str(missing), "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"model folder not found: {missing}" in err


def test_abbreviations_are_refused_and_the_hint_names_the_subcommand(tmp_path, capsys):
    """``--epsilo 2`` would silently run with epsilon = 2 under argparse's default prefix matching."""
    out = str(tmp_path / "m.json")
    assert _error(capsys, ["locate", "--epsilo", "2", "--out", out]) == (
        "achilles: error: unrecognized arguments: --epsilo 2 (see: achilles locate --help)"
    )
    assert "see: achilles study --help" in _error(capsys, ["study", "all", "--out", out, "--trails", "3"])


def test_help_states_each_default_once_and_every_flag_has_help(capsys):
    import argparse

    from lm_eval_achilles.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        missing = [a.option_strings[0] for a in sp._actions if a.option_strings and not a.help]
        assert not missing, f"achilles {name}: flags without help: {missing}"
        text = sp.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        formatter = sp.formatter_class(prog=sp.prog)
        for a in sp._actions:
            shown = formatter._get_help_string(a) or ""
            stated = "default" in (a.help or "")
            assert not (stated and "%(default)" in shown), f"achilles {name} {a.option_strings}: default twice"
