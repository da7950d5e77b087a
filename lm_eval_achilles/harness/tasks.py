"""The task table: every lm-eval task of this package in one place (docs/protocols.md, "Adding a task").

One row per task: its data name, its protocol (the scoring module) and its hub dataset. Everything
else is derived from the rows:

- the lm-eval task is ``achilles_<name>`` (``task_configs/achilles_<name>.yaml``);
- the packaged sample documents are ``sample_data/<name>.jsonl`` and an offline copy is
  ``<data_dir>/<name>.jsonl`` (``resources.SAMPLE_NAMES``, ``task_data``);
- ``task_configs/utils.py`` gets ``load_<name>``, ``<name>_prompt`` and ``<name>_results`` for the YAML
  (perplexity tasks share ``ppl_context``/``ppl_continuation``/``ppl_results`` from their template).

Every protocol module has the same two functions: ``prompt(doc) -> str`` (the request text) and
``score(doc, response) -> dict`` (the task's metrics for one document; ``response`` is what lm-eval's
one request returned: the generated text, or the ``(loglikelihood, is_greedy)`` pair of a perplexity
task). A module may add keyword-only options with defaults (MATH-500's sympy time limit, HumanEval's
code execution); the wiring never passes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from lm_eval_achilles.harness.scoring import gpqa, humaneval, ifeval, math500, mgsm, mmlu_pro, perplexity, simpleqa

_STR, _LIST, _NUM = (str,), (list,), (int, float)


@dataclass(frozen=True)
class HubSource:
    path: str
    name: str | None
    split: str
    data_files: dict[str, str] | None = None
    #: field -> accepted Python type(s), checked on every local record
    required: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return self.path + (f" ({self.name})" if self.name else "") + f" split {self.split}"


@dataclass(frozen=True)
class Task:
    #: the data name: ``sample_data/<name>.jsonl``, ``<data_dir>/<name>.jsonl``, lm-eval task ``achilles_<name>``
    name: str
    #: the scoring module, with ``prompt(doc)`` and ``score(doc, response)``
    protocol: ModuleType
    #: the hub dataset the paper used (the default data)
    source: HubSource

    @property
    def lm_eval_name(self) -> str:
        return f"achilles_{self.name}"

    @property
    def sample_file(self) -> str:
        return f"{self.name}.jsonl"

    @property
    def is_perplexity(self) -> bool:
        """A loglikelihood task (its documents carry their request strings, see ``task_data.load_ppl_dataset``)."""
        return self.protocol is perplexity

    @property
    def process_results(self) -> Callable[[dict, list], dict[str, Any]]:
        """lm-eval's ``process_results``: the protocol's score of the one request's result. A plain
        function (lm-eval deep-copies task configs, and a module cannot be copied)."""
        score = self.protocol.score

        def process_results(doc: dict, results: list) -> dict[str, Any]:
            return score(doc, results[0])

        return process_results


TASKS: tuple[Task, ...] = (
    Task(
        "mmlu_pro",
        mmlu_pro,
        HubSource("TIGER-Lab/MMLU-Pro", None, "test", required={"question": _STR, "options": _LIST, "answer": _STR}),
    ),
    Task(
        "ifeval",
        ifeval,
        HubSource(
            "google/IFEval", None, "train", required={"prompt": _STR, "instruction_id_list": _LIST, "kwargs": _LIST}
        ),
    ),
    Task(
        "gpqa_diamond",
        gpqa,
        HubSource(
            "Idavidrein/gpqa",
            "gpqa_diamond",
            "train",
            required={
                "Question": _STR,
                "Correct Answer": _STR,
                "Incorrect Answer 1": _STR,
                "Incorrect Answer 2": _STR,
                "Incorrect Answer 3": _STR,
                "Record ID": _STR,
            },
        ),
    ),
    Task(
        "humaneval",
        humaneval,
        HubSource(
            "openai/openai_humaneval", None, "test", required={"task_id": _STR, "prompt": _STR, "entry_point": _STR}
        ),
    ),
    Task(
        "math500",
        math500,
        HubSource("HuggingFaceH4/MATH-500", None, "test", required={"problem": _STR, "answer": _STR}),
    ),
    Task(
        "simpleqa", simpleqa, HubSource("basicv8vc/SimpleQA", None, "test", required={"problem": _STR, "answer": _STR})
    ),
    Task(
        "mgsm_en",
        mgsm,
        HubSource("juletxara/mgsm", "en", "test", required={"question": _STR, "answer_number": _NUM}),
    ),
    Task(
        "wikitext",
        perplexity,
        HubSource("Salesforce/wikitext", "wikitext-103-v1", "test", required={"text": _STR}),
    ),
    # one validation shard (~45k documents) instead of the whole corpus; the first 1000 are used
    Task(
        "c4",
        perplexity,
        HubSource(
            "allenai/c4",
            None,
            "validation",
            data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
            required={"text": _STR},
        ),
    ),
)
#: the data names, in table order
NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
BY_NAME: dict[str, Task] = {t.name: t for t in TASKS}
