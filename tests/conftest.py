"""Shared fixtures: the real embedded model (loaded once per session) and a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from lm_eval_achilles.mask.mask_file import FORMAT
from lm_eval_achilles.resources import sample_data_dir

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
FIXTURES = sample_data_dir()  # the documents shipped in the package (also what `achilles demo` uses)


@pytest.fixture(scope="session")
def embedded():
    """SmolLM2-135M-Instruct (the embedded default model), float32 on the CPU."""
    from lm_eval_achilles.models.loading import load_model

    return load_model(None, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def embedded_path():
    from lm_eval_achilles.models.named import model_path

    return model_path()


def make_tiny_llama(seed: int = 0, layers: int = 2, hidden: int = 16, intermediate: int = 32, vocab: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def tiny_llama():
    return make_tiny_llama()


def mask_doc(fingerprint: str, neurons, curve=((0, 1.0),)) -> dict:
    """A minimal valid ``achilles-mask/1`` document for the embedded model's architecture, to break on purpose."""
    return {
        "format": FORMAT,
        "model": {"name_or_path": "embedded", "architecture": "LlamaForCausalLM", "fingerprint": fingerprint},
        "locator": {"method": "perturbation"},
        "ranking": [{"module": m, "channel": c, "score": 1.0} for m, c in neurons],
        "critical": {
            "size": len(neurons),
            "baseline_ppl": 1.0,
            "masked_ppl": 100.0,
            "delta": 2.0,
            "curve": [list(p) for p in curve],
        },
        "neurons": [{"module": m, "channel": c} for m, c in neurons],
    }
