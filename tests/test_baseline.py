"""``achilles check NEW --baseline OLD``, ``--junit`` and ``achilles track``: a checkpoint against the last
accepted one, through the real CLI (transfer and track on the real embedded model)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from test_check import make_comparison, make_mask

from lm_eval_achilles.cli import main
from lm_eval_achilles.mask.mask_file import Neuron, load_mask, save_mask

CRITICAL = Neuron("model.layers.11.mlp.down_proj", 507)


def run(argv, capsys):
    code = main([*map(str, argv)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_sizes_delta_and_overlap_side_by_side(tmp_path, capsys):
    old = make_mask(tmp_path / "old.json", size=3, delta=4.0)
    new = make_mask(tmp_path / "new.json", size=2, delta=4.2)
    code, out = run(["check", new, "--baseline", old, "--max-size-drop", 1, "--max-delta-rise", 0.5], capsys)
    assert code == 0, out
    assert "critical set: 2 neuron(s), Δ 4.200" in out and "baseline: 3 neuron(s), Δ 4.000" in out
    assert "overlap of the critical sets: 2 shared, Jaccard 0.667" in out
    assert "ok    critical set size 2 vs baseline 3: drop 1 <= 1" in out
    code, out = run(["check", new, "--baseline", old, "--max-size-drop", 0, "--min-overlap", 0.9], capsys)
    assert code == 1
    assert "FAIL  critical set size 2 vs baseline 3: drop 1 <= 0" in out
    assert "FAIL  Jaccard of the critical sets 0.667 >= 0.9" in out


def test_a_robust_new_checkpoint_and_an_unbounded_baseline(tmp_path, capsys):
    found = make_mask(tmp_path / "found.json", size=2)
    none = make_mask(tmp_path / "none.json", size=0, delta=0.2, stopping="max_steps_reached", tried=50)
    # the new model needs more than 50 neurons, the old one 2: it did not shrink
    assert run(["check", none, "--baseline", found, "--max-size-drop", 0], capsys)[0] == 0
    # the old one needed more than 50, the new one 2: shrank by at least 49
    code, out = run(["check", found, "--baseline", none, "--max-size-drop", 10], capsys)
    assert code == 1 and "drop >= 49" in out
    # ... by at least 49: whether it shrank by more than 60 cannot be told
    code, out = run(["check", found, "--baseline", none, "--max-size-drop", 60], capsys)
    assert code == 1 and out.count("inconclusive  ") == 1


def test_different_settings_warn_and_make_size_rules_inconclusive(tmp_path, capsys):
    old = make_mask(tmp_path / "old.json")
    mask = load_mask(old)
    mask.locator = {"method": "perturbation", "alpha": 3.0, "samples": 50}
    new = save_mask(mask, tmp_path / "new.json")
    code, out = run(["check", new, "--baseline", old, "--max-size-drop", 0, "--min-overlap", 1], capsys)
    assert code == 1
    assert "located with different settings (alpha 3.0 vs 5.0, samples 50 vs 100)" in out
    assert "inconclusive  critical set size 2 vs baseline 2" in out and "ok    Jaccard" in out


def test_junit_report(tmp_path, capsys):
    old = make_mask(tmp_path / "old.json", size=3)
    new = make_mask(tmp_path / "new.json", size=2)
    report = tmp_path / "ci" / "report.xml"
    (tmp_path / "ci").mkdir()
    code, _ = run(
        [
            "check",
            new,
            "--baseline",
            old,
            "--max-size-drop",
            0,
            "--min-overlap",
            0.5,
            "--min-delta",
            1,
            "--junit",
            report,
        ],
        capsys,
    )
    assert code == 1
    suite = ET.parse(report).getroot()
    cases = suite.findall("testcase")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and len(cases) == 3
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and failed[0].get("name").startswith("--max-size-drop")
    assert "overlap of the critical sets" in suite.find("system-out").text


def test_drop_rise_between_comparisons(tmp_path, capsys):
    old = make_comparison(tmp_path / "old.json")
    doc = json.loads(old.read_text())
    doc["rows"][0]["original"] = 0.8  # the new model loses 0.8 of accuracy when masked, the old one 0.4
    new = tmp_path / "new.json"
    new.write_text(json.dumps(doc))
    code, out = run(["check", new, "--baseline", old, "--max-drop-rise", "achilles_mmlu_pro:acc=0.5"], capsys)
    assert code == 0 and "drop of acc of achilles_mmlu_pro +0.8 vs baseline +0.4: rise +0.4 <= 0.5" in out
    code, out = run(["check", new, "--baseline", old, "--max-drop-rise", "*:acc=0.1"], capsys)
    assert code == 1 and "FAIL  drop of acc" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{new}", "--baseline", "{gemma}", "--max-size-drop", "0"], "another architecture (fingerprint 210aa8cb"),
        (["{new}", "--max-size-drop", "0"], "--max-size-drop compare a new mask file and a baseline mask file"),
        (["{new}", "--baseline", "{new}", "--baseline", "{new}"], "give one baseline mask file"),
        (["{comp}", "--max-drop-rise", "*:acc=1"], "need a new comparison and a baseline comparison"),
        (["{new}", "--baseline", "{new}", "--max-size-drop", "-1"], "--max-size-drop must be >= 0"),
        (["{new}", "--baseline", "{new}", "--max-delta-rise", "nan"], "--max-delta-rise must be a finite number"),
    ],
)
def test_bad_baseline_input(tmp_path, capsys, argv, message):
    from conftest import mask_doc

    gemma = tmp_path / "gemma.json"
    gemma.write_text(json.dumps(mask_doc("210aa8cb6b15b7b8", [("model.layers.0.mlp.down_proj", 1)], curve=())))
    paths = {"new": make_mask(tmp_path / "new.json"), "gemma": gemma, "comp": make_comparison(tmp_path / "c.json")}
    code, out = run(["check", *[a.format(**paths) for a in argv]], capsys)
    assert code == 2 and message in out, out


def test_transfer_is_measured_on_the_models(tmp_path, capsys, embedded):
    """The real critical neuron still collapses the model (Δ > 1 both ways); a set of one ordinary
    neuron does not: the transfer rule fails, with the value measured, not assumed."""
    from lm_eval_achilles.locator.locate import model_info
    from lm_eval_achilles.mask.mask_file import Critical, MaskFile, RankedNeuron

    def mask_with(neuron, path):
        crit = Critical(size=1, baseline_ppl=111.1, masked_ppl=1e6, delta=4.0, curve=[[0, 111.1], [1, 1e6]])
        info = model_info(embedded)
        m = MaskFile(
            info, {"method": "perturbation"}, [RankedNeuron(neuron.module, neuron.channel, 1.0)], crit, [neuron]
        )
        return save_mask(m, path)

    real = mask_with(CRITICAL, tmp_path / "real.json")
    ordinary = mask_with(Neuron("model.layers.3.mlp.down_proj", 17), tmp_path / "ordinary.json")
    code, out = run(["check", real, "--baseline", real, "--min-transfer-delta", 1, "--device", "cpu"], capsys)
    assert code == 0, out
    code, out = run(["check", real, "--baseline", ordinary, "--min-transfer-delta", 1, "--device", "cpu"], capsys)
    assert code == 1
    line = next(x for x in out.splitlines() if x.startswith("FAIL  baseline set on the new model"))
    assert float(line.split("Δ ")[1].split(" ")[0]) < 0.5
    assert "the new set in the baseline model Δ 4." in out


def test_track_two_checkpoints(tmp_path, capsys, embedded):
    """``achilles track`` on the embedded model and a saved copy of it: two masks, the same critical
    neuron, Jaccard 1 with the previous and the first, a table, a JSON and a plot."""
    from lm_eval_achilles.harness.model_args import locate_cache_path
    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.models.loading import LoadedModel

    copy = tmp_path / "copy"
    embedded.model.save_pretrained(copy)
    embedded.tokenizer.save_pretrained(copy)
    out = tmp_path / "track"
    listing = tmp_path / "ckpts.txt"
    listing.write_text(f"embedded  # the base\n\n{copy}\n")
    settings = ["--samples", "10", "--max-steps", "5", "--quiet"]
    try:
        code, text = run(["track", "--list", listing, "--out", out, *settings], capsys)
        assert code == 0, text
        data = json.loads((out / "track.json").read_text())
        assert [r["critical_size"] for r in data["rows"]] == [1, 1]
        assert data["rows"][1]["jaccard_prev"] == 1.0 and data["rows"][1]["jaccard_first"] == 1.0
        assert data["rows"][0]["neurons"] == [[CRITICAL.module, CRITICAL.channel]]
        assert (out / "track.png").stat().st_size > 10_000 and (out / "masks" / "02.json").is_file()
        assert "| 2 | `" in (out / "track.md").read_text()
    finally:
        cfg = LocatorConfig(samples=10, max_steps=5, progress=False)
        for name in ("embedded", str(copy)):  # the entries this test added to the locate cache
            entry = LoadedModel(embedded.model, embedded.tokenizer, name, name)
            locate_cache_path(entry, cfg).unlink(missing_ok=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["embedded"], "track needs at least two checkpoints, got 1"),
        (["embedded", "./missing-ckpt"], "checkpoint 2 (./missing-ckpt) is not a folder here; nothing was located"),
        (["embedded", "embedded"], "checkpoint listed twice: embedded"),
        ([], "no checkpoint given"),
        (["--list", "{tmp}/nope.txt"], "checkpoint list not found"),
    ],
)
def test_track_bad_input_fails_before_any_work(tmp_path, capsys, argv, message):
    code, out = run(["track", *[a.format(tmp=tmp_path) for a in argv], "--out", tmp_path / "o"], capsys)
    assert code == 2 and message in out, out
    assert not (tmp_path / "o").exists()
