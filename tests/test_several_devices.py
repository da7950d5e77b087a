"""Several devices: ``achilles compare`` hands the device map to both lm-eval runs, and ``locate=true``
under ``accelerate launch`` locates once. Two processes on the CPU, ranks given as accelerate sets them
(RANK/LOCAL_RANK/WORLD_SIZE), run the lm-eval model's locate step on the embedded model at once; only
rank 0 locates, rank 1 waits for its cache entry and reads it. A missing entry times out with a clear
message, and rank 0's failure reaches the waiting rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness import distributed
from lm_eval_achilles.harness.model_args import locate_cache_path, locate_cached
from lm_eval_achilles.locator.config import LocatorConfig
from tests.conftest import ROOT

SETTINGS = {"samples": 2, "max_steps": 8, "progress": False}

SCRIPT = """
import json, sys
from lm_eval_achilles.harness.model_args import locate_cached
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.models.loading import load_model
mask, path = locate_cached(load_model(None, dtype="float32", device="cpu"), LocatorConfig(**json.loads(sys.argv[1])))
print("RESULT", json.dumps([[n.module, n.channel] for n in mask.neurons]), path)
"""


def _start(rank: int, cache, extra=None):
    env = {**os.environ, "ACHILLES_CACHE": str(cache), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    env.update({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "PYTHONPATH": str(ROOT), **(extra or {})})
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(SETTINGS)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _shared_model_cache(tmp_path):
    """A fresh locate cache, with the converted embedded model of the usual cache linked in (not re-converted)."""
    from lm_eval_achilles.models.named import cache_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    for entry in cache_dir().iterdir():
        if entry.name != "locate":
            (cache / entry.name).symlink_to(entry)
    return cache


def test_only_rank_0_locates_and_rank_1_reads_its_entry(tmp_path, embedded):
    cache = _shared_model_cache(tmp_path)
    waiting = _start(1, cache)  # started first: it must wait, not locate
    locating = _start(0, cache)
    out1, _ = waiting.communicate(timeout=600)
    out0, _ = locating.communicate(timeout=600)
    assert locating.returncode == 0, out0
    assert waiting.returncode == 0, out1
    assert "locating critical neurons" in out0 and "locating critical neurons" not in out1
    assert "rank 1: waiting for rank 0 to locate" in out1 and "using cached locator result" in out1
    r0 = next(line for line in out0.splitlines() if line.startswith("RESULT"))
    r1 = next(line for line in out1.splitlines() if line.startswith("RESULT"))
    assert r0 == r1  # the same neurons, from the same cache file
    assert len(list((cache / "locate").glob("*.json"))) == 1


def test_waiting_rank_times_out_with_a_clear_message(tmp_path, embedded, monkeypatch):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("ACHILLES_LOCATE_TIMEOUT", "0.5")
    cfg = LocatorConfig(**SETTINGS)
    with pytest.raises(AchillesError, match=r"rank 1 waited 0.5 s for rank 0's locator result .*ACHILLES_CACHE"):
        locate_cached(embedded, cfg)
    # rank 0's failure note reaches the waiting rank at once
    path = locate_cache_path(embedded, cfg)
    distributed.note_failure(path, RuntimeError("out of memory"))
    monkeypatch.setenv("ACHILLES_LOCATE_TIMEOUT", "60")
    with pytest.raises(AchillesError, match="rank 0 failed to locate: RuntimeError: out of memory"):
        locate_cached(embedded, cfg)
    monkeypatch.setenv("ACHILLES_LOCATE_TIMEOUT", "soon")
    with pytest.raises(AchillesError, match="ACHILLES_LOCATE_TIMEOUT must be a number of seconds"):
        locate_cached(embedded, cfg)


def test_compare_passes_the_device_map_to_both_conditions():
    """``achilles compare --device-map auto``: both lm-eval runs get ``parallelize=True,device_map=auto``
    (HFLM ignores a device map without parallelize), not only the locate step."""
    from lm_eval_achilles.cli import build_parser
    from lm_eval_achilles.cli.compare import base_model_args
    from lm_eval_achilles.comparison.conditions import model_args_for

    args = build_parser().parse_args(["compare", "--tasks", "t", "--out", "o", "--device-map", "auto"])
    base = base_model_args(args)
    for masked in (False, True):
        cond = model_args_for(base, "mask.json", masked)
        assert cond["parallelize"] is True and cond["device_map"] == "auto"
    plain = base_model_args(build_parser().parse_args(["compare", "--tasks", "t", "--out", "o"]))
    assert "parallelize" not in plain and "device_map" not in plain


def test_lm_eval_model_loads_with_the_compare_device_map(embedded):
    """The model arguments compare builds are accepted by lm-eval's HFLM and place the model by the map."""
    import torch

    from lm_eval_achilles.cli import build_parser
    from lm_eval_achilles.cli.compare import base_model_args
    from lm_eval_achilles.comparison.conditions import model_args_for
    from lm_eval_achilles.harness.lm_model import AchillesMaskedLM

    argv = ["compare", "--tasks", "t", "--out", "o", "--device", "cpu", "--device-map", "cpu"]
    args = model_args_for(base_model_args(build_parser().parse_args(argv)), None, masked=False)
    lm = AchillesMaskedLM(device="cpu", **args)
    assert {p.device for p in lm.model.parameters()} == {torch.device("cpu")}
    assert lm.achilles_neurons == []  # the original condition: nothing masked
