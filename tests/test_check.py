"""``achilles check``: exit codes 0 (holds), 1 (violated) and 2 (bad input) through the real CLI."""

from __future__ import annotations

import json

import pytest

from lm_eval_achilles.cli import main
from lm_eval_achilles.comparison.check import degradation, parse_spec
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.mask.mask_file import Critical, MaskFile, ModelInfo, RankedNeuron, save_mask


def make_mask(path, size=2, delta=4.2, baseline=111.0, stopping="threshold", tried=1):
    ranking = [RankedNeuron("model.layers.11.mlp.down_proj", 507 + i, 100.0 - i) for i in range(10)]
    neurons = [r.neuron for r in ranking[:size]]
    crit = Critical(
        size=size,
        baseline_ppl=baseline,
        masked_ppl=baseline * 10**delta,
        delta=delta,
        curve=[[0, baseline]] + [[n, baseline * 10**delta] for n in range(1, tried + 1)],
        stopping_reason=stopping,
    )
    mask = MaskFile(
        model=ModelInfo("embedded", "LlamaForCausalLM", "abc"),
        locator={"method": "perturbation"},
        ranking=ranking,
        critical=crit,
        neurons=neurons,
    )
    return save_mask(mask, path)


def make_comparison(path):
    rows = [
        {
            "task": "achilles_mmlu_pro",
            "metric": "acc",
            "filter": "none",
            "n": 5,
            "original": 0.4,
            "masked": 0.0,
            "difference": -0.4,
            "higher_is_better": True,
            "kind": "binary",
            "scale": "value",
            "test": {"name": "mcnemar-exact"},
        },
        {
            "task": "achilles_mmlu_pro",
            "metric": "meaningless_rate",
            "filter": "none",
            "n": 5,
            "original": 0.0,
            "masked": 1.0,
            "difference": 1.0,
            "higher_is_better": False,
            "kind": "binary",
            "scale": "value",
            "test": {"name": "mcnemar-exact"},
        },
        {
            "task": "achilles_simpleqa",
            "metric": "meaningless_rate",
            "filter": "none",
            "n": 5,
            "original": 0.2,
            "masked": 0.8,
            "difference": 0.6,
            "higher_is_better": False,
            "kind": "binary",
            "scale": "value",
            "test": {"name": "mcnemar-exact"},
        },
        {
            "task": "achilles_wikitext",
            "metric": "token_perplexity",
            "filter": "none",
            "n": 9,
            "original": 20.0,
            "masked": 2.0e6,
            "difference": 2.0e6 - 20,
            "higher_is_better": False,
            "kind": "pair",
            "scale": "log10",
            "test": {"name": "paired-bootstrap"},
        },
    ]
    path.write_text(json.dumps({"format": "achilles-comparison/1", "rows": rows}))
    return path


@pytest.fixture
def mask_path(tmp_path):
    return make_mask(tmp_path / "mask.json")


@pytest.fixture
def comp_path(tmp_path):
    return make_comparison(tmp_path / "comparison.json")


def run(argv, capsys):
    code = main(["check", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_mask_rules_hold(mask_path, capsys):
    code, out = run(
        [mask_path, "--min-critical-size", 2, "--max-critical-size", 5, "--min-delta", 1, "--max-baseline-ppl", 200],
        capsys,
    )
    assert code == 0, out
    assert "all 4 rule(s) hold" in out
    assert "critical set size 2 >= 2" in out


def test_mask_rule_violated(mask_path, capsys):
    code, out = run([mask_path, "--min-critical-size", 3, "--max-delta", 5], capsys)
    assert code == 1
    assert "FAIL  critical set size 2 >= 3" in out
    assert "ok    Delta 4.200 <= 5.0" in out
    assert "1 of 2 rule(s) violated" in out


def test_no_critical_set_found_is_robust(tmp_path, capsys):
    p = make_mask(tmp_path / "robust.json", size=0, delta=0.3, stopping="max_steps", tried=100)
    assert run([p, "--min-critical-size", 100], capsys)[0] == 0
    assert run([p, "--max-critical-size", 100], capsys)[0] == 1


def test_min_size_beyond_what_was_tried_is_inconclusive(tmp_path, capsys):
    """No critical set within 4 tried sizes says nothing about size >= 1000: exit 1, "inconclusive"."""
    p = make_mask(tmp_path / "capped.json", size=0, delta=0.3, stopping="max_steps_reached", tried=4)
    code, out = run([p, "--min-critical-size", 5], capsys)
    assert code == 0 and "ok    no critical set within the 4 neurons tried" in out
    code, out = run([p, "--min-critical-size", 1000], capsys)
    assert code == 1 and "inconclusive  no critical set within the 4 neurons tried" in out
    assert "1 of 1 rule(s) inconclusive" in out


def test_comparison_rules(comp_path, capsys):
    code, out = run(
        [
            comp_path,
            "--min-original-score",
            "achilles_mmlu_pro:acc=0.3",
            "--max-masked-score",
            "*:meaningless_rate=1.0",
            "--min-drop",
            "achilles_wikitext:token_perplexity=3",
        ],
        capsys,
    )
    assert code == 0, out
    assert "all 4 rule(s) hold" in out  # '*' expands to the two tasks reporting meaningless_rate
    assert "orders of magnitude" in out


def test_comparison_rule_violated_from_folder(comp_path, capsys):
    code, out = run(
        [comp_path.parent, "--min-masked-score", "achilles_mmlu_pro:acc=0.2", "--max-drop", "*:meaningless_rate=0.5"],
        capsys,
    )
    assert code == 1
    assert "FAIL  masked acc of achilles_mmlu_pro >= 0.2 (is 0)" in out
    assert "FAIL  degradation of meaningless_rate on achilles_mmlu_pro <= 0.5 (is +1)" in out
    assert "FAIL  degradation of meaningless_rate on achilles_simpleqa <= 0.5 (is +0.6)" in out


def test_mask_and_comparison_together(mask_path, comp_path, capsys):
    code, _ = run(
        [mask_path, comp_path, "--min-critical-size", 1, "--min-masked-score", "achilles_mmlu_pro:acc=0"], capsys
    )
    assert code == 0


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["{mask}"], "no rules given"),
        (["{mask}", "--min-masked-score", "achilles_mmlu_pro:acc=0.1"], "no comparison was given"),
        (["{comp}", "--min-critical-size", "2"], "no mask file was given"),
        (["{comp}", "--min-masked-score", "nope:acc=0.1"], "no task 'nope'"),
        (["{comp}", "--min-masked-score", "achilles_mmlu_pro:f1=0.1"], "no metric 'f1'"),
        (["{comp}", "--min-masked-score", "achilles_mmlu_pro:acc"], "expected TASK:METRIC=VALUE"),
        (["{comp}", "--min-masked-score", "achilles_mmlu_pro:acc=high"], "is not a number"),
        (["{tmp}/missing.json", "--min-critical-size", "1"], "file not found"),
        (["{bad}", "--min-critical-size", "1"], "malformed JSON"),
        (["{other}", "--min-critical-size", "1"], "neither a mask file"),
        (["{tmp}", "--min-critical-size", "1"], "a folder without comparison.json"),
    ],
)
def test_bad_input_exits_2(argv, needle, tmp_path, capsys):
    mask = make_mask(tmp_path / "m" / "mask.json")
    comp = make_comparison(tmp_path / "comparison.json")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [
        a.format(
            mask=mask,
            comp=comp,
            tmp=empty if a == "{tmp}" else tmp_path,
            bad=tmp_path / "bad.json",
            other=tmp_path / "other.json",
        )
        for a in argv
    ]
    code, out = run(argv, capsys)
    assert code == 2
    assert needle in out
    assert out.strip().startswith("achilles: error:")


def test_degradation_direction():
    assert degradation({"original": 0.5, "masked": 0.2, "higher_is_better": True}) == pytest.approx(0.3)
    assert degradation({"original": 0.1, "masked": 0.9, "higher_is_better": False}) == pytest.approx(0.8)
    assert degradation({"original": 10.0, "masked": 1e4, "scale": "log10"}) == pytest.approx(3.0)
    assert degradation({"original": None, "masked": 1.0}) is None


def test_parse_spec_with_filter():
    s = parse_spec("achilles_mgsm_en:exact_match,strict=0.25", "--min-masked-score")
    assert (s.task, s.metric, s.filter, s.value) == ("achilles_mgsm_en", "exact_match", "strict", 0.25)
    with pytest.raises(AchillesError):
        parse_spec("acc=0.1", "--min-masked-score")


def test_infinite_degradation_counts_as_degradation(tmp_path, capsys):
    """A masked perplexity of inf (stored as the string "inf") is an infinitely large degradation."""
    path = make_comparison(tmp_path / "comparison.json")
    data = json.loads(path.read_text())
    data["rows"][-1]["masked"] = "inf"
    path.write_text(json.dumps(data))
    code, out = run([path, "--max-drop", "achilles_wikitext:token_perplexity=3"], capsys)
    assert code == 1 and "(is +inf orders of magnitude)" in out
    code, out = run([path, "--min-drop", "achilles_wikitext:token_perplexity=3"], capsys)
    assert code == 0
