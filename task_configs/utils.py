"""Thin wiring between lm-eval's YAML tasks and the package's task table.

Every name a YAML file refers to with ``!function utils.NAME`` is made here from the task table
(``lm_eval_achilles.harness.tasks.TASKS``); nothing here is specific to one task:

- ``load_<name>``: ``custom_dataset`` (lm-eval calls it with ``--metadata`` and the model arguments);
- ``<name>_prompt``: ``doc_to_text``, the protocol module's ``prompt``;
- ``<name>_results``: ``process_results``, the protocol module's ``score`` of the one request's result;
- the perplexity template's ``ppl_context``, ``ppl_continuation`` and ``ppl_results``, and the
  aggregations.

Imports are absolute because this folder is installed inside the wheel as ``lm_eval_achilles/task_configs``.
"""

from __future__ import annotations

from functools import partial

from lm_eval_achilles.harness import quiet, task_data
from lm_eval_achilles.harness.scoring import aggregate, perplexity
from lm_eval_achilles.harness.tasks import BY_NAME, TASKS

quiet.install()  # lm-eval's per-task `--metadata` hint, which every achilles_* task would print

for _task in TASKS:
    _loader = task_data.load_ppl_dataset if _task.is_perplexity else task_data.load_task_dataset
    globals()[f"load_{_task.name}"] = partial(_loader, _task.name)
    if not _task.is_perplexity:
        globals()[f"{_task.name}_prompt"] = _task.protocol.prompt
        globals()[f"{_task.name}_results"] = _task.process_results

# ---- the perplexity template (one for both corpora, so one protocol) -----------------------------------------------
ppl_context = perplexity.prompt
ppl_continuation = perplexity.continuation
ppl_results = BY_NAME["wikitext"].process_results

# ---- aggregations ----------------------------------------------------------------------------------
flat_mean = aggregate.flat_mean
mean_over_flagged = aggregate.mean_over_flagged
token_perplexity = perplexity.token_weighted_perplexity
