"""``--minimize``: a verified-minimal set on the real embedded model (properties re-measured independently,
one mask per forward), the budget, the mask-file block, ``select=minimal``, the check rules and the report."""

from __future__ import annotations

import json

import pytest
import torch

from lm_eval_achilles.cli import main
from lm_eval_achilles.defaults import PROBE_TEXT
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.model_args import MaskingSpec
from lm_eval_achilles.locator.minimize import grid, minimize
from lm_eval_achilles.locator.perplexity import delta, encode, mean_nll
from lm_eval_achilles.mask.mask_file import (
    Critical,
    MaskFile,
    Minimal,
    ModelInfo,
    Neuron,
    RankedNeuron,
    load_mask,
    mask_from_json,
    save_mask,
)
from lm_eval_achilles.mask.masking import masked
from lm_eval_achilles.models.loading import fingerprint

D = "model.layers.{}.mlp.down_proj"
#: The critical prefix `achilles locate --modules 're:^(?!model\.layers\.11\.mlp\.down_proj$)'` finds on the
#: embedded model (its usual critical neuron excluded, so the prefix is 9 channels long), and the ranking
#: entries that follow it: inputs of the search, whose result is checked by re-measuring, not by value.
PREFIX = [
    Neuron(D.format(layer), c)
    for layer, c in [(28, 507), (29, 507), (29, 199), (29, 31), (28, 17), (28, 247), (29, 471), (29, 17), (2, 507)]
]
FOLLOWING = [
    Neuron(D.format(layer), c)
    for layer, c in [
        (9, 507),
        (28, 14),
        (28, 260),
        (28, 308),
        (28, 230),
        (29, 260),
        (28, 100),
        (29, 308),
        (29, 387),
        (28, 59),
        (29, 371),
        (29, 350),
        (10, 507),
    ]
]


def _delta_alone(model, ids, base, neurons):
    """Delta with this one mask on a batch of one row (not the batched per-row masks the search uses)."""
    with torch.no_grad(), masked(model, neurons):
        return delta(float(mean_nll(model, ids)[0]), base)


@pytest.fixture(scope="module")
def probe(embedded):
    ids = encode(embedded.tokenizer, PROBE_TEXT)
    return ids, float(mean_nll(embedded.model, ids)[0])


@pytest.fixture(scope="module")
def minimized(embedded, probe):
    ids, base = probe
    return minimize(embedded.model, ids, PREFIX, PREFIX + FOLLOWING, 1.0, baseline=base, progress=False)


def test_minimal_set_is_verified_minimal_and_no_larger_than_the_prefix(embedded, probe, minimized):
    ids, base = probe
    res = minimized
    assert res.verified_minimal and res.stopping_reason == "minimal"
    assert 1 <= len(res.neurons) < len(PREFIX)  # this prefix overshoots: a strictly smaller set exists
    assert len(set(res.neurons)) == len(res.neurons)
    # re-measured independently: the set crosses epsilon ...
    d = _delta_alone(embedded.model, ids, base, res.neurons)
    assert d >= 1.0 and d == pytest.approx(res.delta, abs=2e-3)
    # ... and no single neuron can be removed with Delta staying >= epsilon
    for i in range(len(res.neurons)):
        assert _delta_alone(embedded.model, ids, base, res.neurons[:i] + res.neurons[i + 1 :]) < 1.0
    assert res.sets_evaluated > 0 and 0 < res.forward_passes <= res.sets_evaluated
    assert res.log[0]["step"] == "prefix" and res.log[-1]["size"] == len(res.neurons)


def test_budget_returns_the_best_crossing_set_found(embedded, probe):
    ids, base = probe
    res = minimize(embedded.model, ids, PREFIX, PREFIX + FOLLOWING, 1.0, baseline=base, max_evals=12, progress=False)
    assert res.stopping_reason == "budget" and res.sets_evaluated <= 12
    assert len(res.neurons) <= len(PREFIX)
    assert _delta_alone(embedded.model, ids, base, res.neurons) >= 1.0
    with pytest.raises(AchillesError, match="max_evals must be >= 1"):
        minimize(embedded.model, ids, PREFIX, PREFIX, 1.0, baseline=base, max_evals=0, progress=False)


def test_a_one_neuron_critical_set_is_already_minimal(embedded, probe):
    ids, base = probe
    crit = [Neuron(D.format(11), 507)]
    res = minimize(embedded.model, ids, crit, crit + PREFIX, 1.0, baseline=base, progress=False)
    assert res.neurons == crit and res.verified_minimal
    assert res.sets_evaluated == 1  # the set itself; its only leave-one-out set is the unmasked model


def test_prefix_that_does_not_cross_is_refused(embedded, probe):
    ids, base = probe
    with pytest.raises(AchillesError, match="does not cross epsilon"):
        minimize(embedded.model, ids, PREFIX[:2], PREFIX, 1.0, baseline=base, progress=False)


def test_grid_of_block_sizes():
    assert grid(2, 5, 8) == [2, 3, 4, 5]
    g = grid(1, 60, 8)
    assert len(g) <= 8 and g[0] == 1 and g[-1] == 60 and g == sorted(set(g))
    assert grid(3, 2, 8) == []


# ---- the mask file, select=minimal, check and report ---------------------------------------------------


def _mask(embedded=None, minimal=True):
    ranking = [RankedNeuron(n.module, n.channel, 100.0 - i) for i, n in enumerate(PREFIX + FOLLOWING)]
    mask = MaskFile(
        model=ModelInfo("embedded", "LlamaForCausalLM", fingerprint(embedded.model) if embedded else "x"),
        locator={"method": "perturbation", "epsilon": 1.0, "scale": 0.0},
        ranking=ranking,
        critical=Critical(size=9, baseline_ppl=111.0, masked_ppl=1301.0, delta=1.07, curve=[[0, 111.0], [9, 1301.0]]),
        neurons=list(PREFIX),
    )
    if minimal:
        mask.minimal = Minimal(
            neurons=[PREFIX[0], PREFIX[3], FOLLOWING[0]],
            delta=1.17,
            baseline_ppl=111.0,
            masked_ppl=1650.0,
            method="augment+prune",
            forward_passes=8,
            sets_evaluated=50,
            seconds=3.5,
            start_size=9,
        )
    return mask


def test_mask_file_keeps_critical_and_adds_minimal(tmp_path):
    path = save_mask(_mask(), tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert doc["critical"]["size"] == 9 and len(doc["neurons"]) == 9
    assert doc["minimal"]["neurons"][2] == {"module": D.format(9), "channel": 507}
    assert {"neurons", "delta", "baseline_ppl", "masked_ppl", "method", "forward_passes"} <= doc["minimal"].keys()
    again = load_mask(path)
    assert again.minimal == _mask().minimal
    # older files (no minimal block) stay valid
    old = save_mask(_mask(minimal=False), tmp_path / "old.json")
    assert "minimal" not in json.loads(old.read_text()) and load_mask(old).minimal is None
    # a broken block names its field
    del doc["minimal"]["forward_passes"]
    with pytest.raises(AchillesError, match="minimal: missing key 'forward_passes'"):
        mask_from_json(doc, "m.json")
    doc["minimal"]["forward_passes"] = 3
    doc["minimal"]["neurons"] = []
    with pytest.raises(AchillesError, match="minimal: neurons is empty"):
        mask_from_json(doc, "m.json")


def test_select_minimal(embedded, tmp_path):
    path = save_mask(_mask(embedded), tmp_path / "m.json")
    spec = MaskingSpec.from_args(mask=str(path), select="minimal")
    assert spec.resolve(embedded) == [PREFIX[0], PREFIX[3], FOLLOWING[0]]
    assert spec.provenance(spec.resolve(embedded))["select"] == "minimal"
    assert MaskingSpec.from_args(mask=str(path)).resolve(embedded) == PREFIX  # the paper's set stays the default
    old = save_mask(_mask(embedded, minimal=False), tmp_path / "old.json")
    with pytest.raises(AchillesError, match="no minimal set; write one with `achilles locate --minimize`"):
        MaskingSpec.from_args(mask=str(old), select="minimal")  # fails before any model is loaded
    with pytest.raises(AchillesError, match="unknown select='smallest'"):
        MaskingSpec.from_args(mask=str(path), select="smallest")
    with pytest.raises(AchillesError, match="either top_n=3 or select=minimal"):
        MaskingSpec.from_args(mask=str(path), select="minimal", top_n=3)


def test_check_rules_on_the_minimal_set(tmp_path, capsys):
    path = save_mask(_mask(), tmp_path / "m.json")
    assert main(["check", str(path), "--min-critical-size", "5", "--min-minimal-size", "3"]) == 0
    assert main(["check", str(path), "--min-minimal-size", "5"]) == 1  # the prefix overshoots: the gate catches it
    assert "minimal set size 3 >= 5" in capsys.readouterr().out
    assert main(["check", str(path), "--max-minimal-size", "3"]) == 0
    old = save_mask(_mask(minimal=False), tmp_path / "old.json")
    assert main(["check", str(old), "--min-minimal-size", "3"]) == 2
    assert "has none (write one with `achilles locate --minimize`)" in capsys.readouterr().err


def test_report_marks_the_minimal_set(tmp_path):
    path = save_mask(_mask(), tmp_path / "m.json")
    assert main(["report", str(path), "--out", str(tmp_path / "rep"), "--no-model"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "**Minimal set (`achilles locate --minimize`): 3 neuron(s)**, verified minimal" in md
    assert md.count("★") == 1 + 3  # the legend, two prefix neurons and one beyond the prefix
    assert "(beyond the prefix)" in md
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["minimal"]["method"] == "augment+prune"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--max-evals", "0", "--minimize"], "--max-evals: must be >= 1, got '0'"),
        (["--max-evals", "10"], "needs --minimize"),
    ],
)
def test_locate_budget_arguments(argv, needle, tmp_path, capsys):
    assert main(["locate", "--out", str(tmp_path / "m.json"), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_locate_minimize_end_to_end(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["locate", "--samples", "20", "--minimize", "--max-evals", "50", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["locator"]["minimize"] is True and doc["locator"]["max_evals"] == 50
    # the embedded model's critical set is one neuron: already minimal, found at no extra cost
    assert doc["minimal"]["neurons"] == doc["neurons"] == [{"module": D.format(11), "channel": 507}]
    assert doc["minimal"]["verified_minimal"] is True and doc["minimal"]["delta"] == pytest.approx(
        doc["critical"]["delta"]
    )
    assert "minimal set: 1 neuron(s), verified minimal" in printed
