"""The lm-eval model ``achilles_masked`` on the embedded model, through the stock lm_eval script and
through ``lm_eval.simple_evaluate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_achilles.errors import AchillesError

ROOT = Path(__file__).resolve().parents[1]
TASKS = str(ROOT / "tests" / "lm_eval_tasks")
CRITICAL = [["model.layers.11.mlp.down_proj", 507]]


@pytest.fixture(scope="module")
def critical_mask(tmp_path_factory, embedded):
    """A mask file for the embedded model whose critical set is the neuron the locator finds."""
    from lm_eval_achilles.mask.mask_file import FORMAT
    from lm_eval_achilles.models.loading import fingerprint

    ranking = CRITICAL + [["model.layers.28.mlp.down_proj", 507], ["model.layers.29.mlp.down_proj", 507]]
    doc = {
        "format": FORMAT,
        "model": {
            "name_or_path": "embedded",
            "architecture": "LlamaForCausalLM",
            "fingerprint": fingerprint(embedded.model),
        },
        "locator": {"method": "perturbation"},
        "ranking": [{"module": m, "channel": c, "score": 3.0 - i} for i, (m, c) in enumerate(ranking)],
        "critical": {
            "size": 1,
            "baseline_ppl": 111.1,
            "masked_ppl": 1.9e6,
            "delta": 4.2,
            "curve": [[0, 111.1], [1, 1.9e6]],
        },
        "neurons": [{"module": m, "channel": c} for m, c in CRITICAL],
    }
    path = tmp_path_factory.mktemp("mask") / "mask.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _evaluate(
    model_args: dict, tasks=("achilles_test_rolling", "achilles_test_gen"), batch_size=4, model="achilles_masked"
):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import lm_eval_achilles.harness.lm_model  # noqa: F401

    out = lm_eval.simple_evaluate(
        model=model,
        model_args={"dtype": "float32", **model_args},
        tasks=list(tasks),
        device="cpu",
        batch_size=batch_size,
        log_samples=True,
        task_manager=TaskManager(include_path=TASKS),
    )
    return out


def _generations(out):
    return [s["resps"][0][0] for s in out["samples"]["achilles_test_gen"]]


def _wppl(out):
    return out["results"]["achilles_test_rolling"]["word_perplexity,none"]


def test_stock_lm_eval_console_script(tmp_path, critical_mask):
    """`lm_eval --model achilles_masked` with the stock console script, original and masked."""
    lm_eval_bin = Path(sys.executable).with_name("lm_eval")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = {}
    for label, extra in (("original", "top_n=0"), ("masked", f"mask={critical_mask}")):
        out_dir = tmp_path / label
        cmd = [
            str(lm_eval_bin),
            "--model",
            "achilles_masked",
            "--model_args",
            f"pretrained=embedded,dtype=float32,{extra}",
            "--include_path",
            TASKS,
            "--tasks",
            "achilles_test_rolling,achilles_test_gen",
            "--device",
            "cpu",
            "--batch_size",
            "4",
            "--output_path",
            str(out_dir),
            "--log_samples",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(next(out_dir.rglob("results_*.json")).read_text())
        samples = [json.loads(line) for line in next(out_dir.rglob("samples_achilles_test_gen_*.jsonl")).open()]
        runs[label] = (results, [s["resps"][0][0] for s in samples])
    (orig, orig_gen), (mask, mask_gen) = runs["original"], runs["masked"]
    w0 = orig["results"]["achilles_test_rolling"]["word_perplexity,none"]
    w1 = mask["results"]["achilles_test_rolling"]["word_perplexity,none"]
    assert w1 >= 10 * w0
    assert all(a != b for a, b in zip(orig_gen, mask_gen))
    prov = mask["config"]["achilles_mask"]
    assert prov["masked"] and prov["n_channels"] == 1 and prov["modules"] == ["model.layers.11.mlp.down_proj"]
    assert prov["apply"] == "hooks" and prov["scale"] == 0.0 and len(prov["mask_sha256"]) == 64
    assert orig["config"]["achilles_mask"]["masked"] is False


def test_batch_size_and_fold_and_export(tmp_path, critical_mask):
    b4 = _evaluate({"pretrained": "embedded", "mask": critical_mask}, batch_size=4)
    b1 = _evaluate({"pretrained": "embedded", "mask": critical_mask}, batch_size=1)
    fold = _evaluate({"pretrained": "embedded", "mask": critical_mask, "apply": "fold"}, batch_size=4)
    assert _wppl(b1) == pytest.approx(_wppl(b4), rel=1e-5)
    assert _generations(b1) == _generations(b4)
    assert _wppl(fold) == pytest.approx(_wppl(b4), rel=1e-6)
    assert _generations(fold) == _generations(b4)
    assert fold["config"]["achilles_mask"]["apply"] == "fold"
    # an exported (folded) checkpoint, loaded with plain `hf`, gives the masked scores
    from lm_eval_achilles.cli import main

    export_dir = tmp_path / "exported"
    assert (
        main(["export", "--mask", critical_mask, "--out", str(export_dir), "--dtype", "float32", "--device", "cpu"])
        == 0
    )
    plain = _evaluate({"pretrained": str(export_dir)}, model="hf")
    assert _wppl(plain) == pytest.approx(_wppl(b4), rel=1e-5)
    assert _generations(plain) == _generations(b4)


def test_locate_runs_once_then_cached(capfd):
    from lm_eval_achilles.models.named import cache_dir

    args = {"pretrained": "embedded", "locate": True, "locate_samples": 9, "locate_seed": 2024}
    before = set((cache_dir() / "locate").glob("*.json")) if (cache_dir() / "locate").is_dir() else set()
    try:
        first = _evaluate(args, tasks=("achilles_test_rolling",))
        assert "locating critical neurons" in capfd.readouterr().out
        second = _evaluate(args, tasks=("achilles_test_rolling",))
        assert "using cached locator result" in capfd.readouterr().out
        assert first["config"]["achilles_mask"]["source"] == "locate"
        assert first["config"]["achilles_mask"]["neurons"] == second["config"]["achilles_mask"]["neurons"]
        assert _wppl(first) == _wppl(second)
    finally:
        for path in set((cache_dir() / "locate").glob("*.json")) - before:
            path.unlink()


def test_use_cache_never_mixes_original_and_masked(tmp_path, critical_mask):
    import lm_eval
    from lm_eval.tasks import TaskManager

    cache = str(tmp_path / "shared_cache")
    runs = {}
    for label, extra in (("original", {"top_n": 0}), ("masked", {"mask": critical_mask}), ("original2", {"top_n": 0})):
        runs[label] = lm_eval.simple_evaluate(
            model="achilles_masked",
            model_args={"pretrained": "embedded", "dtype": "float32", **extra},
            tasks=["achilles_test_rolling"],
            device="cpu",
            batch_size=4,
            use_cache=cache,
            task_manager=TaskManager(include_path=TASKS),
        )
    w = {k: v["results"]["achilles_test_rolling"]["word_perplexity,none"] for k, v in runs.items()}
    assert w["masked"] >= 10 * w["original"]
    assert w["original2"] == w["original"]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"mask": "/nonexistent/mask.json"}, "mask file not found"),
        ({"mask": "MASK", "locate": True}, "not both"),
        ({"mask": "MASK", "top_n": 4}, "larger than the ranking"),
        ({"mask": "MASK", "apply": "magic"}, "unknown apply"),
        ({"top_n": 3}, "needs a ranking"),
    ],
)
def test_bad_model_args_fail_before_loading(args, message, critical_mask):
    from lm_eval_achilles.harness.lm_model import AchillesMaskedLM

    args = {k: (critical_mask if v == "MASK" else v) for k, v in args.items()}
    with pytest.raises(AchillesError, match=message):
        AchillesMaskedLM(pretrained="/nonexistent/model/never/loaded", **args)


def test_mask_for_another_model_is_refused(tmp_path, critical_mask):
    from lm_eval_achilles.harness.lm_model import AchillesMaskedLM

    doc = json.loads(Path(critical_mask).read_text())
    doc["model"]["fingerprint"] = "ffffffffffffffff"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AchillesError, match="another model"):
        AchillesMaskedLM(pretrained="embedded", mask=str(path), dtype="float32", device="cpu")


def test_achilles_eval_prints_one_error_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval_achilles.cli",
            "eval",
            "--model",
            "achilles_masked",
            "--model_args",
            "pretrained=embedded,mask=/nonexistent.json",
            "--tasks",
            "achilles_test_rolling",
            "--include_path",
            TASKS,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "achilles: error: mask file not found: /nonexistent.json"


def test_locate_samples_auto_through_the_model_args(embedded):
    """``locate=true,locate_samples=auto`` reaches the locator as adaptive K (not an error, not K = 100)
    and is cached under its own key."""
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.harness.model_args import MaskingSpec, locate_cache_path, locate_cached

    spec = MaskingSpec.from_args(locate="true", locate_samples="auto")
    assert spec.locate_config.samples == "auto"
    fixed = MaskingSpec.from_args(locate="true", locate_samples=100)
    assert locate_cache_path(embedded, spec.locate_config) != locate_cache_path(embedded, fixed.locate_config)
    path = locate_cache_path(embedded, spec.locate_config)
    existed = path.is_file()
    try:
        mask, _ = locate_cached(embedded, spec.locate_config)
        assert mask.locator["samples"] == "auto" and mask.locator["samples_used"] < 100
        assert [(n.module, n.channel) for n in mask.neurons] == [("model.layers.11.mlp.down_proj", 507)]
    finally:
        if not existed and path.is_file():
            path.unlink()
    with pytest.raises(AchillesError, match="locate_samples must be an integer"):
        MaskingSpec.from_args(locate="true", locate_samples="automatic")
