"""The task table (lm_eval_achilles/harness/tasks.py) agrees with the YAML tasks, the sample files and
the protocol modules: a task added in one place and forgotten in another fails here, without a model."""

from __future__ import annotations

import importlib.util
import inspect
import json

import pytest
import yaml

from lm_eval_achilles.harness.tasks import NAMES, TASKS
from lm_eval_achilles.resources import SAMPLE_NAMES, sample_data_dir, task_configs_dir

CONFIGS = task_configs_dir()


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: ("function", loader.construct_scalar(node)))


def _yaml(name: str) -> dict:
    return yaml.load((CONFIGS / name).read_text(), Loader=_Loader)


def _config(task) -> dict:
    """The task's YAML merged over the template it includes (as lm-eval does)."""
    own = _yaml(f"{task.lm_eval_name}.yaml")
    return {**_yaml(own["include"]), **own} if "include" in own else own


def _utils():
    spec = importlib.util.spec_from_file_location("achilles_task_utils", CONFIGS / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _functions(value):
    if isinstance(value, tuple) and value[:1] == ("function",):
        yield value[1]
    elif isinstance(value, dict):
        for v in value.values():
            yield from _functions(v)
    elif isinstance(value, list):
        for v in value:
            yield from _functions(v)


def test_every_yaml_task_is_in_the_table_and_the_groups():
    yaml_tasks = sorted(p.stem for p in CONFIGS.glob("achilles_*.yaml"))
    assert yaml_tasks == sorted(t.lm_eval_name for t in TASKS)
    for task in TASKS:
        assert _yaml(f"{task.lm_eval_name}.yaml")["task"] == task.lm_eval_name
    groups = {name: _yaml(name)["task"] for name in ("_achilles.yaml", "_achilles_ppl.yaml")}
    assert groups["_achilles.yaml"] == [t.lm_eval_name for t in TASKS if not t.is_perplexity]
    assert groups["_achilles_ppl.yaml"] == [t.lm_eval_name for t in TASKS if t.is_perplexity]
    assert SAMPLE_NAMES == NAMES


def test_every_yaml_function_exists_in_utils():
    utils = _utils()
    for path in sorted(CONFIGS.glob("*yaml")):
        for ref in _functions(_yaml(path.name)):
            module, _, name = ref.partition(".")
            assert module == "utils" and callable(getattr(utils, name, None)), (path.name, ref)


def test_protocols_share_one_signature():
    for task in TASKS:
        for fn, first in ((task.protocol.prompt, ["doc"]), (task.protocol.score, ["doc", "response"])):
            params = list(inspect.signature(fn).parameters.values())
            assert [p.name for p in params[: len(first)]] == first, (task.name, fn.__name__)
            assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in params[len(first) :])


@pytest.mark.parametrize("task", [t for t in TASKS if not t.is_perplexity], ids=lambda t: t.name)
def test_sample_documents_prompt_and_score_with_the_yaml_metrics(task):
    """Every packaged document gives a prompt, and its score has exactly the YAML's metrics (HumanEval's
    pass_at_1 only when code runs)."""
    utils = _utils()
    metrics = {m["metric"] for m in _config(task)["metric_list"]}
    records = [json.loads(line) for line in (sample_data_dir() / task.sample_file).read_text().splitlines() if line]
    for doc in records:
        assert getattr(utils, f"{task.name}_prompt")(doc) == task.protocol.prompt(doc)
        assert isinstance(task.protocol.prompt(doc), str) and task.protocol.prompt(doc)
        scored = getattr(utils, f"{task.name}_results")(doc, ["The answer is (A). 42"])
        assert set(scored) | ({"pass_at_1"} if task.name == "humaneval" else set()) == metrics


def test_perplexity_results_are_the_loglikelihood_and_the_scored_tokens():
    utils = _utils()
    doc = {"ppl_context": "a", "ppl_continuation": " b c", "ppl_scored": 2}
    assert (utils.ppl_context(doc), utils.ppl_continuation(doc)) == ("a", " b c")
    assert utils.ppl_results(doc, [(-3.5, False)]) == {"token_perplexity": (-3.5, 2)}
    assert utils.ppl_results(doc, [-3.5]) == {"token_perplexity": (-3.5, 2)}
