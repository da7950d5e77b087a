"""Thin wiring between lm-eval's YAML tasks and the package's scoring code.

All logic lives in ``lm_eval_achilles.harness.scoring`` (pure, unit-tested functions) and
``lm_eval_achilles.harness.task_data`` (data loading); this file only adapts signatures. Imports are absolute
because this folder is installed inside the wheel as ``lm_eval_achilles/task_configs``.
"""

from __future__ import annotations

from functools import partial

from lm_eval_achilles.harness import task_data
from lm_eval_achilles.harness.scoring import (
    aggregate,
    code_exec,
    gpqa,
    humaneval,
    ifeval,
    math500,
    mgsm,
    mmlu_pro,
    simpleqa,
)
from lm_eval_achilles.harness.scoring.perplexity import token_weighted_perplexity

# ---- data (lm-eval calls custom_dataset(**metadata), metadata = --metadata + model_args) ----------
load_mmlu_pro = partial(task_data.load_task_dataset, "mmlu_pro")
load_ifeval = partial(task_data.load_task_dataset, "ifeval")
load_gpqa_diamond = partial(task_data.load_task_dataset, "gpqa_diamond")
load_humaneval = partial(task_data.load_task_dataset, "humaneval")
load_math500 = partial(task_data.load_task_dataset, "math500")
load_simpleqa = partial(task_data.load_task_dataset, "simpleqa")
load_mgsm_en = partial(task_data.load_task_dataset, "mgsm_en")
load_wikitext = partial(task_data.load_ppl_dataset, "wikitext")
load_c4 = partial(task_data.load_ppl_dataset, "c4")

# ---- aggregations ----------------------------------------------------------------------------------
flat_mean = aggregate.flat_mean
mean_over_flagged = aggregate.mean_over_flagged
token_perplexity = token_weighted_perplexity


# ---- prompts ---------------------------------------------------------------------------------------
def mmlu_pro_prompt(doc):
    return mmlu_pro.build_prompt(doc["question"], doc["options"])


def gpqa_prompt(doc):
    return gpqa.build_prompt(doc["Question"], gpqa.prepare(doc).choices)


def humaneval_prompt(doc):
    return doc["prompt"]


def ifeval_prompt(doc):
    return doc["prompt"]


def math500_prompt(doc):
    return math500.build_prompt(doc["problem"])


def simpleqa_prompt(doc):
    return simpleqa.build_prompt(doc["problem"])


def mgsm_prompt(doc):
    return doc["question"]


def ppl_context(doc):
    return doc["ppl_context"]


def ppl_continuation(doc):
    return doc["ppl_continuation"]


# ---- per-document metrics (results = [generated text] or [(loglikelihood, is_greedy)]) --------------
def mmlu_pro_results(doc, results):
    return mmlu_pro.score(doc, results[0])


def gpqa_results(doc, results):
    shuffled = gpqa.prepare(doc)
    return gpqa.score(shuffled.choices, shuffled.gold, results[0])


def humaneval_results(doc, results):
    # pass_at_1 executes model-written code: only with HF_ALLOW_CODE_EVAL=1 and --confirm_run_unsafe_code
    execute = code_exec.execution_allowed("achilles_humaneval")
    return humaneval.score(results[0], doc, execute=execute)


def ifeval_results(doc, results):
    return ifeval.score(doc, results[0])


def math500_results(doc, results):
    return math500.score(doc["answer"], results[0])


def simpleqa_results(doc, results):
    return simpleqa.score(doc["answer"], results[0])


def mgsm_results(doc, results):
    return mgsm.score(doc, results[0])


def ppl_results(doc, results):
    loglikelihood = results[0][0] if isinstance(results[0], (tuple, list)) else results[0]
    return {"token_perplexity": (float(loglikelihood), int(doc["ppl_scored"]))}
