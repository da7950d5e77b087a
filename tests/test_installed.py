"""The installed package, used as a new user would: the ``achilles`` console script of this interpreter's
environment, run from an empty folder, with no ``--data-dir`` and nothing from the source checkout on the
path. In CI the package is installed without ``-e`` (``pip install .``), so this is the wheel's content:
a demo that only works next to a source checkout fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPTS = Path(sys.executable).parent


def _installed(name: str) -> str:
    path = SCRIPTS / name
    assert path.is_file(), f"{path} not found: install the package (pip install .) into this environment first"
    return str(path)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ACHILLES_DATA_DIR")}
    env["PYTHONSAFEPATH"] = "1"  # never import from the current directory
    return env


def test_installed_demo_runs_from_an_empty_folder(tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    args = [_installed("achilles"), "demo", "--out", "demo", "--tasks", "achilles_mmlu_pro,achilles_wikitext"]
    args += ["--limit", "1", "--max-gen-toks", "2", "--samples", "4", "--max-new-tokens", "2"]
    args += ["--bootstrap-iters", "50", "--quiet"]
    proc = subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cwd / "demo"
    comparison = json.loads((out / "compare" / "comparison.json").read_text())
    rows = {(r["task"], r["metric"]): r for r in comparison["rows"]}
    assert rows[("achilles_mmlu_pro", "acc")]["n"] == 1
    assert rows[("achilles_wikitext", "token_perplexity")]["n"] == 1
    assert json.loads((out / "mask.json").read_text())["critical"]["size"] >= 1
    assert (out / "demo.md").is_file()


def test_installed_package_ships_its_data_and_tasks(tmp_path):
    code = "import lm_eval_achilles.resources as r; print(r.sample_data_dir()); print(r.task_configs_dir())"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    data_dir, task_dir = (Path(p) for p in proc.stdout.split())
    assert sorted(p.stem for p in data_dir.glob("*.jsonl")) == sorted(
        ["c4", "gpqa_diamond", "humaneval", "ifeval", "math500", "mgsm_en", "mmlu_pro", "simpleqa", "wikitext"]
    )
    assert (task_dir / "achilles_mmlu_pro.yaml").is_file()
