"""``LocatorConfig``: one set of locator settings for ``locate()``, the CLI commands, the model arguments
and the mask file's ``locator`` block."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lm_eval_achilles.cli import build_parser, main
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.model_args import SPEC_ARGS, MaskingSpec
from lm_eval_achilles.locator.config import LocatorConfig

#: every setting a flag / model argument can carry (a mapping and the progress bars are Python-only)
SETTINGS = [n for n in LocatorConfig.names() if n not in ("prompts", "progress")]


def _dests(command: str) -> dict[str, str]:
    """field -> argparse destination of the locator flags of ``command``."""
    argv = {"locate": ["locate", "--out", "m.json"], "study": ["study", "all", "--out", "o"]}
    args, _ = build_parser().parse_known_args(argv.get(command, [command, "--out", "o"]))
    return args._locator_dests


def test_record_round_trip_and_old_files():
    cfg = LocatorConfig(samples="auto", epsilon=2.5, modules="*down_proj", minimize=True, max_evals=40, step=2)
    record = json.loads(json.dumps(cfg.to_record()))  # through JSON, as a mask file
    assert LocatorConfig.from_record(record) == cfg
    # an older file: fewer keys, plus facts of the run that are not settings
    old = {"method": "perturbation", "alpha": 3.0, "samples": 50, "seed": 1, "dtype": "float32", "probe_tokens": 75}
    got = LocatorConfig.from_record(old)
    assert (got.alpha, got.samples, got.seed) == (3.0, 50, 1)
    assert got.batch_size == LocatorConfig().batch_size and got.search_batch_size == LocatorConfig().search_batch_size
    assert "minimize" not in LocatorConfig().to_record() and "prompts" not in LocatorConfig().to_record()


def test_frozen_validated_once_and_named_errors():
    cfg = LocatorConfig(alpha="3", samples="7")  # strings from a command line are normalised
    assert (cfg.alpha, cfg.samples) == (3.0, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 1.0
    with pytest.raises(AchillesError, match="did you mean samples"):
        LocatorConfig.build(sampels=3)
    with pytest.raises(AchillesError, match="samples=auto applies to the perturbation method only"):
        LocatorConfig(method="gradient", samples="auto")
    with pytest.raises(AchillesError, match="max_evals=5 needs minimize"):
        LocatorConfig(max_evals=5)
    assert LocatorConfig(seed=1).differences(LocatorConfig(seed=2, step=3)) == {"seed": (1, 2), "step": (1, 3)}


def test_locate_study_compare_demo_and_model_args_take_the_same_settings():
    for command in ("locate", "study", "compare", "demo"):
        dests = _dests(command)
        expected = [s for s in SETTINGS if command == "locate" or s not in ("minimize", "max_evals")]
        assert sorted(n for n in dests if n not in ("text_file", "prompts_file")) == sorted(expected), command
    assert [f"locate_{s}" for s in SETTINGS] == [a for a in SPEC_ARGS if a.startswith("locate_")]
    # compare: lm-eval's --seed/--batch-size and the mask's --scale stay theirs; the locator's are prefixed
    assert {k: v for k, v in _dests("compare").items() if v.startswith("locate_")} == {
        "seed": "locate_seed",
        "batch_size": "locate_batch_size",
        "scale": "locate_scale",
    }
    spec = MaskingSpec.from_args(locate="true", locate_samples="auto", locate_step=2, locate_modules="*down_proj")
    assert spec.locate_config == LocatorConfig(samples="auto", step=2, modules="*down_proj")
    with pytest.raises(AchillesError, match="locate_step must be >= 1"):
        MaskingSpec.from_args(locate="true", locate_step=0)


def test_study_samples_auto_runs(tmp_path, capsys):
    """``achilles study --samples auto`` was refused while ``locate --samples auto`` worked: one vocabulary."""
    out = tmp_path / "studies"
    code = main(["study", "threshold", "--samples", "auto", "--quick", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "threshold" / "threshold.json").read_text())
    assert data["meta"]["samples"] == "auto" and data["rows"]


def test_locate_on_a_model_you_built(embedded):
    """``LoadedModel`` around a model built elsewhere: locate() runs on it and records the given name."""
    from lm_eval_achilles import LoadedModel, locate

    mask = locate(
        LoadedModel(embedded.model, embedded.tokenizer, "my-org/my-model"), samples=20, max_steps=5, progress=False
    )
    assert mask.model.name_or_path == "my-org/my-model"
    assert [(n.module, n.channel) for n in mask.neurons] == [("model.layers.11.mlp.down_proj", 507)]
    assert LoadedModel(embedded.model, embedded.tokenizer, "x").display_name == "x"
