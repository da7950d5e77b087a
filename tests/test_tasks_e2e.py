"""End to end: the achilles tasks run offline in lm-eval on the embedded model and report every metric
of docs/protocols.md; the perplexity tasks reproduce the reference formula (docs/protocols.md).

Kept short for 2 CPU cores: one document per generative task and 16 new tokens (the YAML defaults of
50/512 tokens are the protocol; only this test overrides them), two or three texts per corpus.
"""

import json
import math
from pathlib import Path

import pytest

from lm_eval_achilles.resources import sample_data_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sample_data_dir()  # the documents shipped in the package (also what `achilles demo` uses)
TASK_DIR = ROOT / "task_configs"

METRICS = {
    "achilles_mmlu_pro": ["acc"],
    "achilles_ifeval": [
        "prompt_level_strict_acc",
        "inst_level_strict_acc",
        "prompt_level_strict_acc_unfiltered",
        "inst_level_strict_acc_unfiltered",
    ],
    "achilles_gpqa_diamond": ["acc", "acc_strict"],
    "achilles_humaneval": ["extraction_rate"],
    "achilles_math500": ["acc"],
    "achilles_simpleqa": ["contains_answer", "exact_match"],
    "achilles_mgsm_en": ["reasoning_rate", "exact_match", "reasoning_rate_meaningful"],
}
PPL_LIMIT = 3

pytestmark = pytest.mark.slow


def _evaluate(embedded_path, tasks, limit, gen_kwargs=None):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=str(TASK_DIR),
        include_defaults=False,
        metadata={"data_dir": str(FIXTURES), "pretrained": str(embedded_path)},
    )
    return simple_evaluate(
        model="hf",
        model_args=f"pretrained={embedded_path},dtype=float32",
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        gen_kwargs=gen_kwargs,
        device="cpu",
        batch_size=4,
        log_samples=False,
        bootstrap_iters=0,
    )


def test_generative_tasks_report_every_metric(embedded_path):
    out = _evaluate(embedded_path, ["achilles"], limit=1, gen_kwargs="max_gen_toks=16")
    results = out["results"]
    for task, names in METRICS.items():
        assert task in results, f"{task} missing from the results"
        for name in names + ["meaningless_rate"]:
            value = results[task].get(f"{name},none")
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (task, name, value)
    # the protocol settings reached the requests: greedy, EOS only, no chat template
    configs = out["configs"]
    assert configs["achilles_mmlu_pro"]["generation_kwargs"]["until"] == []
    assert configs["achilles_mmlu_pro"]["generation_kwargs"]["do_sample"] is False
    assert configs["achilles_mmlu_pro"]["num_fewshot"] == 0


def _reference_ppl(model_path, corpus, limit):
    """The authors' perplexity formula, written out: truncate at 512, loss * N, exp(total / tokens)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
    total, tokens, used = 0.0, 0, 0
    for line in open(FIXTURES / f"{corpus}.jsonl"):
        text = json.loads(line)["text"].strip()
        if not (len(text) > 50 if corpus == "wikitext" else len(text) >= 50):
            continue
        ids = tok(text, return_tensors="pt", truncation=True, max_length=512).input_ids
        with torch.no_grad():
            loss = model(ids, labels=ids).loss.item()
        total += loss * ids.shape[1]
        tokens += ids.shape[1]
        used += 1
        if used == limit:
            break
    return math.exp(total / tokens)


def test_perplexity_tasks_match_the_reference_formula(embedded_path):
    results = _evaluate(embedded_path, ["achilles_ppl"], limit=PPL_LIMIT)["results"]
    for corpus in ("wikitext", "c4"):
        got = results[f"achilles_{corpus}"]["token_perplexity,none"]
        assert got == pytest.approx(_reference_ppl(embedded_path, corpus, PPL_LIMIT), rel=1e-4)
