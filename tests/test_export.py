"""``achilles export`` on the real embedded model: the source's configuration and tokenizer files,
portable to transformers 4.x, files readable by others, and weights that load to the hooked model."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import mask_doc

from lm_eval_achilles.cli import main
from lm_eval_achilles.mask.export import portable_config, portable_tokenizer_config
from lm_eval_achilles.mask.mask_file import Neuron
from lm_eval_achilles.mask.masking import masked
from lm_eval_achilles.models.loading import fingerprint

NEURONS = [("model.layers.3.mlp.down_proj", 10), ("model.layers.5.mlp.act_fn", 7), ("model.norm", 12)]
TEXT = "The capital of France is Paris, and the capital of Germany is"


@pytest.fixture(scope="module")
def exported(embedded, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "mask.json").write_text(json.dumps(mask_doc(fingerprint(embedded.model), NEURONS)))
    out = tmp / "out"
    assert main(["export", "--mask", str(tmp / "mask.json"), "--dtype", "float32", "--out", str(out)]) == 0
    return out


def test_config_and_tokenizer_files_are_the_sources_made_portable(exported, embedded_path):
    for name in ("tokenizer.json", "generation_config.json", "chat_template.jinja"):
        assert (exported / name).read_bytes() == (embedded_path / name).read_bytes(), name
    source = json.loads((embedded_path / "config.json").read_text())
    config = json.loads((exported / "config.json").read_text())
    assert config == portable_config(source)
    # the transformers-4 spelling of every transformers-5-only key, with the same values
    assert config["rope_theta"] == source["rope_parameters"]["rope_theta"] == 100000.0
    assert config["torch_dtype"] == config["dtype"] == "float32"
    tok = json.loads((exported / "tokenizer_config.json").read_text())
    assert tok == portable_tokenizer_config(json.loads((embedded_path / "tokenizer_config.json").read_text()))
    assert tok["tokenizer_class"] == "PreTrainedTokenizerFast"  # 4.x has no TokenizersBackend


def test_files_are_readable_by_others(exported):
    umask = os.umask(0)
    os.umask(umask)
    for f in exported.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name
        assert f.stat().st_mode & 0o044 == 0o044 & ~umask, f.name


@torch.no_grad()
def test_exported_weights_load_to_the_hooked_models_logits(exported, embedded):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported)
    ids = tok(TEXT, return_tensors="pt").input_ids
    assert ids.tolist() == embedded.tokenizer(TEXT, return_tensors="pt").input_ids.tolist()
    model = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    clean = embedded.model(ids).logits
    with masked(embedded.model, [Neuron(m, c) for m, c in NEURONS]):
        hooked = embedded.model(ids).logits
    assert (hooked - clean).abs().max() > 1e-2
    torch.testing.assert_close(model(ids).logits, hooked, rtol=0, atol=1e-5)


def test_portable_config_maps_scaled_and_per_layer_type_rope():
    llama3 = {"dtype": "bfloat16", "rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}}
    out = portable_config(llama3)
    assert out["rope_theta"] == 5e5 and out["torch_dtype"] == "bfloat16"
    assert out["rope_scaling"] == {"rope_type": "llama3", "type": "llama3", "factor": 8.0}
    gemma = {
        "rope_parameters": {
            "full_attention": {"rope_theta": 1e6, "rope_type": "default"},
            "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"},
        }
    }
    out = portable_config(gemma)
    assert out["rope_theta"] == 1e6 and out["rope_local_base_freq"] == 1e4 and "rope_scaling" not in out
    v4 = {"rope_theta": 1e4, "torch_dtype": "float16"}  # already 4.x: nothing changes
    assert portable_config(v4) == v4
    assert portable_tokenizer_config({"extra_special_tokens": ["<a>"]}) == {"additional_special_tokens": ["<a>"]}


@torch.no_grad()
def test_export_from_a_gguf_file_saves_the_dequantised_masked_model(embedded, tmp_path):
    """``--gguf-file``: transformers' GGUF loader refuses to save; the export re-materialises the weights.
    The embedded checkpoint is this very GGUF file dequantised, so the export must give its hooked logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_eval_achilles.models.named import gguf_path

    gguf = gguf_path()
    (tmp_path / "mask.json").write_text(json.dumps(mask_doc(fingerprint(embedded.model), NEURONS)))
    argv = ["export", "--model", str(gguf.parent), "--gguf-file", gguf.name, "--dtype", "float32"]
    assert main([*argv, "--mask", str(tmp_path / "mask.json"), "--out", str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in config and config["rope_theta"] == 100000.0
    ids = AutoTokenizer.from_pretrained(tmp_path / "out")(TEXT, return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    with masked(embedded.model, [Neuron(m, c) for m, c in NEURONS]):
        hooked = embedded.model(ids).logits
    torch.testing.assert_close(model(ids).logits, hooked, rtol=0, atol=1e-5)


def test_streaming_export_equals_the_normal_export(exported, embedded_path, tmp_path):
    """``--streaming`` patches the masked rows in the source shards without loading the model: the same
    tensors as the normal export (same names, dtypes, values), only the masked ones changed, same files."""
    from safetensors.torch import load_file

    out = tmp_path / "streamed"
    mask = exported.parent / "mask.json"
    assert main(["export", "--streaming", "--mask", str(mask), "--out", str(out)]) == 0
    streamed, normal = load_file(out / "model.safetensors"), load_file(exported / "model.safetensors")
    source = load_file(embedded_path / "model.safetensors")
    assert sorted(streamed) == sorted(normal)
    for key, value in streamed.items():
        assert value.dtype == normal[key].dtype and torch.equal(value, normal[key]), key
    changed = sorted(k for k in streamed if not torch.equal(streamed[k], source[k]))
    assert changed == ["model.layers.3.mlp.down_proj.weight", "model.layers.5.mlp.up_proj.weight", "model.norm.weight"]
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        assert (out / name).read_bytes() == (exported / name).read_bytes(), name
    umask = os.umask(0)
    os.umask(umask)
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in out.iterdir())


@torch.no_grad()
def test_gguf_export_loads_back_to_the_hooked_models_logits(embedded, tmp_path):
    """``--format gguf`` on the embedded model (itself a Q4_1 GGUF): zeroed rows in quantised q/k/o/down/up
    tensors (q/k through llama.cpp's row permutation) and F32 norm gains; transformers reads the written
    file back (``gguf_file=``) to exactly the hooked model's logits."""
    from transformers import AutoModelForCausalLM

    from lm_eval_achilles.models.named import gguf_path

    neurons = [
        *NEURONS,
        ("model.layers.2.input_layernorm", 4),
        ("model.layers.7.self_attn.q_proj", 33),
        ("model.layers.7.self_attn.k_proj", 70),
        ("model.layers.9.self_attn.o_proj", 100),
    ]
    (tmp_path / "mask.json").write_text(json.dumps(mask_doc(fingerprint(embedded.model), neurons)))
    out = tmp_path / "out"
    assert main(["export", "--format", "gguf", "--mask", str(tmp_path / "mask.json"), "--out", str(out)]) == 0
    name = gguf_path().name
    assert (out / name).stat().st_size == gguf_path().stat().st_size
    ids = embedded.tokenizer(TEXT, return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).eval()
    with masked(embedded.model, [Neuron(m, c) for m, c in neurons]):
        hooked = embedded.model(ids).logits
    assert (hooked - embedded.model(ids).logits).abs().max() > 1e-2
    torch.testing.assert_close(model(ids).logits, hooked, rtol=0, atol=1e-5)


def test_gguf_export_refuses_what_it_cannot_fold_exactly(embedded, tmp_path):
    doc = mask_doc(fingerprint(embedded.model), [("model.layers.3.mlp.down_proj", 10)])
    (tmp_path / "mask.json").write_text(json.dumps(doc))
    argv = ["export", "--format", "gguf", "--mask", str(tmp_path / "mask.json"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--scale", "0.5"]) == 2  # a Q4_1 row times 0.5 needs requantisation
    (tmp_path / "mask.json").write_text(json.dumps({**doc, "neurons": [{"module": "lm_head", "channel": 3}]}))
    assert main(argv) == 2  # tied output layer
    assert not (tmp_path / "o").exists()
