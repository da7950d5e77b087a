"""Reading lm-eval output folders, pairing documents by id, scoring and writing the comparison.

The folders are written here in lm-eval 0.4's own layout (``DIR/<model>/results_<date>.json`` and
``samples_<task>_<date>.jsonl`` with ``doc_id``, ``filter``, ``metrics``, ``doc_hash`` and the metric
values per record), so these tests need no model."""

from __future__ import annotations

import json
import math

import pytest

from lm_eval_achilles.comparison.conditions import model_args_for
from lm_eval_achilles.comparison.metrics import compare_folders
from lm_eval_achilles.comparison.pairing import pair_task
from lm_eval_achilles.comparison.runs import load_run
from lm_eval_achilles.comparison.tables import comparison_markdown, comparison_table, write_comparison
from lm_eval_achilles.errors import AchillesError

DATE = "2026-01-01T00-00-00.000001"


def _record(doc_id, metrics: dict, filt="none", doc_hash=None):
    rec = {
        "doc_id": doc_id,
        "doc": {"q": f"question {doc_id}"},
        "target": "x",
        "arguments": {},
        "resps": [],
        "filtered_resps": [],
        "filter": filt,
        "metrics": list(metrics),
        "doc_hash": doc_hash or f"h{doc_id}",
        "prompt_hash": f"p{doc_id}",
        "target_hash": "t",
    }
    rec.update(metrics)
    return rec


def write_run(
    folder,
    tasks: dict,
    results: dict | None = None,
    config: dict | None = None,
    date=DATE,
    configs: dict | None = None,
    model_dir="some__model",
):
    """tasks: {task: [record, ...]}; results: {task: {"acc,none": ...}}."""
    d = folder / model_dir
    d.mkdir(parents=True, exist_ok=True)
    payload = {
        "results": results or {t: {"alias": t} for t in tasks},
        "configs": configs or {t: {"task": t} for t in tasks},
        "higher_is_better": {t: {"acc": True, "word_perplexity": False} for t in tasks},
        "config": {
            "model": "achilles_masked",
            "model_args": {},
            "limit": 4,
            "batch_size": 1,
            "random_seed": 1234,
            **(config or {}),
        },
        "lm_eval_version": "0.4.13",
    }
    (d / f"results_{date}.json").write_text(json.dumps(payload))
    for task, recs in tasks.items():
        with (d / f"samples_{task}_{date}.jsonl").open("w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    return folder


ORIG_ACC = [1, 1, 1, 1, 0, 0, 1, 0, 1, 1]
MASK_ACC = [0, 0, 0, 1, 0, 1, 0, 0, 0, 0]


@pytest.fixture
def two_runs(tmp_path):
    o = write_run(
        tmp_path / "orig",
        {"qa": [_record(i, {"acc": v}) for i, v in enumerate(ORIG_ACC)]},
        results={"qa": {"acc,none": 0.7, "acc_stderr,none": 0.15}},
    )
    # the masked run logs its documents in another order: pairing must go by doc_id
    m = write_run(
        tmp_path / "mask",
        {"qa": [_record(i, {"acc": MASK_ACC[i]}) for i in reversed(range(10))]},
        results={"qa": {"acc,none": 0.2, "acc_stderr,none": 0.13}},
        config={
            "achilles_mask": {
                "masked": True,
                "n_channels": 1,
                "neurons": [["m.down", 5]],
                "scale": 0.0,
                "apply": "hooks",
                "mask_file": "mask.json",
            }
        },
    )
    return o, m


def test_binary_metric_gets_mcnemar_paired_by_doc_id(two_runs):
    comp = compare_folders(*two_runs)
    (row,) = comp["rows"]
    assert (row["task"], row["metric"], row["n"]) == ("qa", "acc", 10)
    assert row["original"] == 0.7 and row["masked"] == 0.2  # lm-eval's reported aggregates
    assert row["difference"] == pytest.approx(-0.5)
    t = row["test"]
    assert t["name"] == "mcnemar-exact" and (t["b"], t["c"]) == (6, 1)
    assert t["p_value"] == pytest.approx(2 * (1 + 7) / 128)
    assert row["original_stderr"] == 0.15
    assert comp["format"] == "achilles-comparison/1"
    assert comp["masked"]["achilles_mask"]["n_channels"] == 1


def test_scores_recomputed_from_documents_when_results_lack_them(tmp_path):
    o = write_run(tmp_path / "o", {"qa": [_record(i, {"acc": v}) for i, v in enumerate(ORIG_ACC)]})
    m = write_run(tmp_path / "m", {"qa": [_record(i, {"acc": v}) for i, v in enumerate(MASK_ACC)]})
    (row,) = compare_folders(o, m)["rows"]
    assert row["original"] == pytest.approx(0.7) and row["masked"] == pytest.approx(0.2)


def test_missing_document_is_a_clear_error(tmp_path):
    o = write_run(tmp_path / "o", {"qa": [_record(i, {"acc": 1}) for i in range(5)]})
    m = write_run(tmp_path / "m", {"qa": [_record(i, {"acc": 0}) for i in range(4)]})
    with pytest.raises(
        AchillesError,
        match=r"task qa: the runs did not score the same documents: "
        r"1 document\(s\) only in the original run \(doc_id 4\)",
    ):
        compare_folders(o, m)


def test_mismatched_document_ids_both_ways(tmp_path):
    o = write_run(tmp_path / "o", {"qa": [_record(i, {"acc": 1}) for i in (0, 1, 2)]})
    m = write_run(tmp_path / "m", {"qa": [_record(i, {"acc": 1}) for i in (0, 1, 7, 8)]})
    with pytest.raises(AchillesError) as err:
        compare_folders(o, m)
    msg = str(err.value)
    assert "only in the original run (doc_id 2)" in msg
    assert "2 document(s) only in the masked run (doc_id 7, 8)" in msg


def test_same_id_different_document_is_refused(tmp_path):
    o = write_run(tmp_path / "o", {"qa": [_record(i, {"acc": 1}) for i in range(3)]})
    m = write_run(
        tmp_path / "m", {"qa": [_record(i, {"acc": 1}, doc_hash="other" if i == 1 else None) for i in range(3)]}
    )
    with pytest.raises(AchillesError, match="doc_id 1 holds different documents"):
        compare_folders(o, m)


def test_duplicate_doc_id_is_refused():
    recs = [_record(0, {"acc": 1}), _record(0, {"acc": 0})]
    with pytest.raises(AchillesError, match="appears twice"):
        pair_task("qa", recs, recs[:1])


def test_task_missing_from_one_run(tmp_path):
    o = write_run(tmp_path / "o", {"qa": [_record(0, {"acc": 1})], "other": [_record(0, {"acc": 1})]})
    m = write_run(tmp_path / "m", {"qa": [_record(0, {"acc": 1})]})
    with pytest.raises(AchillesError, match="other has no samples in the masked run"):
        compare_folders(o, m)
    # restricting to the common task works
    assert [r["task"] for r in compare_folders(o, m, tasks=["qa"])["rows"]] == ["qa"]


def test_folder_without_samples_or_results(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AchillesError, match="no lm-eval results_"):
        load_run(tmp_path / "empty")
    with pytest.raises(AchillesError, match="not found"):
        load_run(tmp_path / "nope")
    d = tmp_path / "nosamples" / "m"
    d.mkdir(parents=True)
    (d / f"results_{DATE}.json").write_text(json.dumps({"results": {}}))
    with pytest.raises(AchillesError, match="without --log_samples"):
        load_run(tmp_path / "nosamples")


def test_newest_results_file_and_its_samples_are_used(tmp_path):
    old = "2025-01-01T00-00-00.000001"
    write_run(tmp_path / "o", {"qa": [_record(i, {"acc": 0}) for i in range(3)]}, date=old)
    write_run(tmp_path / "o", {"qa": [_record(i, {"acc": 1}) for i in range(2)]})
    run = load_run(tmp_path / "o")
    assert run.results_file.name == f"results_{DATE}.json"
    assert [r["acc"] for r in run.samples["qa"]] == [1, 1]


def test_filters_are_paired_separately(tmp_path):
    def recs(vals):
        return [_record(i, {"exact_match": v[0]}, "strict") for i, v in enumerate(vals)] + [
            _record(i, {"exact_match": v[1]}, "flex") for i, v in enumerate(vals)
        ]

    o = write_run(tmp_path / "o", {"gsm": recs([(1, 1), (0, 1), (1, 1)])})
    m = write_run(tmp_path / "m", {"gsm": recs([(0, 0), (0, 0), (1, 0)])})
    rows = {r["filter"]: r for r in compare_folders(o, m)["rows"]}
    assert set(rows) == {"strict", "flex"}
    assert (rows["flex"]["test"]["b"], rows["flex"]["test"]["c"]) == (3, 0)
    assert (rows["strict"]["test"]["b"], rows["strict"]["test"]["c"]) == (1, 0)


def test_weighted_perplexity_pairs_bootstrap_on_log10_scale(tmp_path):
    # (loglikelihood, words) per document; masked loses 3 nats/word everywhere
    orig = [(-2.0 * w, w) for w in (5, 8, 3, 10)]
    mask = [(-5.0 * w, w) for w in (5, 8, 3, 10)]
    o = write_run(tmp_path / "o", {"ppl": [_record(i, {"word_perplexity": list(v)}) for i, v in enumerate(orig)]})
    m = write_run(tmp_path / "m", {"ppl": [_record(i, {"word_perplexity": list(v)}) for i, v in enumerate(mask)]})
    (row,) = compare_folders(o, m, iters=300)["rows"]
    assert row["kind"] == "pair" and row["scale"] == "log10"
    assert row["original"] == pytest.approx(math.exp(2.0)) and row["masked"] == pytest.approx(math.exp(5.0))
    t = row["test"]
    assert t["name"] == "paired-bootstrap"
    assert t["ci_low"] == pytest.approx(3 / math.log(10)) and t["ci_high"] == pytest.approx(3 / math.log(10))
    assert t["extra"]["delta_log10"] == pytest.approx(3 / math.log(10))
    assert row["higher_is_better"] is False


def test_non_binary_scalar_metric_gets_bootstrap(tmp_path):
    o = write_run(tmp_path / "o", {"s": [_record(i, {"score": 0.5 + 0.1 * i}) for i in range(5)]})
    m = write_run(tmp_path / "m", {"s": [_record(i, {"score": 0.1 * i}) for i in range(5)]})
    (row,) = compare_folders(o, m, iters=500)["rows"]
    assert row["test"]["name"] == "paired-bootstrap"
    assert row["difference"] == pytest.approx(-0.5)
    assert row["test"]["ci_low"] == pytest.approx(-0.5) and row["test"]["ci_high"] == pytest.approx(-0.5)


def test_variable_length_lists_are_micro_averaged(tmp_path):
    # IFEval-style instruction-level lists
    o = write_run(
        tmp_path / "o", {"if": [_record(0, {"inst": [True, True]}), _record(1, {"inst": [True, False, True]})]}
    )
    m = write_run(
        tmp_path / "m", {"if": [_record(0, {"inst": [False, False]}), _record(1, {"inst": [True, False, False]})]}
    )
    (row,) = compare_folders(o, m, iters=100)["rows"]
    assert row["kind"] == "list"
    assert row["original"] == pytest.approx(4 / 5) and row["masked"] == pytest.approx(1 / 5)


def test_settings_mismatch_is_warned(tmp_path):
    o = write_run(tmp_path / "o", {"qa": [_record(0, {"acc": 1})]}, config={"limit": 4})
    m = write_run(tmp_path / "m", {"qa": [_record(0, {"acc": 1})]}, config={"limit": 8})
    comp = compare_folders(o, m)
    assert any("limit differs" in w for w in comp["warnings"])


def test_write_comparison_json_md_and_plot(two_runs, tmp_path):
    comp = compare_folders(*two_runs)
    paths = write_comparison(comp, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["test"]["b"] == 6
    md = paths["md"].read_text()
    assert "| qa | acc ↑ | 10 | 0.7 | 0.2 | -0.5 | McNemar exact (b=6, c=1) | p = 0.125 |" in md
    assert "1 neuron(s) masked (m.down ch 5)" in md
    assert paths["plot"].stat().st_size > 1000
    assert comparison_table(comp) in comparison_markdown(comp)


def test_model_args_of_the_two_conditions():
    base = {"pretrained": "m", "dtype": "float32", "device": None}
    assert model_args_for(base, "mask.json", masked=False) == {
        "pretrained": "m",
        "dtype": "float32",
        "mask": "mask.json",
        "top_n": 0,
    }
    assert model_args_for(base, "mask.json", masked=True) == {
        "pretrained": "m",
        "dtype": "float32",
        "mask": "mask.json",
    }
    assert model_args_for(base, "mask.json", masked=True, top_n=3)["top_n"] == 3


def test_cli_compares_two_existing_folders(two_runs, tmp_path, capsys):
    from lm_eval_achilles.cli import main

    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--original",
                str(two_runs[0]),
                "--masked",
                str(two_runs[1]),
                "--out",
                str(out),
                "--bootstrap-iters",
                "100",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "qa" in printed and "p = 0.125" in printed
    assert (out / "comparison.json").is_file() and (out / "comparison.md").is_file()
    # only one folder, or mismatched runs: one error line, exit 2
    assert main(["compare", "--original", str(two_runs[0]), "--out", str(out)]) == 2
    assert "give both --original and --masked" in capsys.readouterr().err
    other = write_run(tmp_path / "short", {"qa": [_record(i, {"acc": 1}) for i in range(3)]})
    assert (
        main(["compare", "--original", str(two_runs[0]), "--masked", str(other), "--out", str(out), "--overwrite"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("achilles: error: task qa: the runs did not score the same documents")


def test_nonfinite_documents_are_kept_named_and_counted(tmp_path):
    """A NaN or an infinite per-document score is never dropped: the comparison names the documents,
    the infinite difference is reported as such, and comparison.json stays standard JSON."""
    inf_o = [_record(i, {"word_perplexity": 10.0}) for i in range(6)]
    inf_m = [_record(i, {"word_perplexity": math.inf if i == 4 else 10.0}) for i in range(6)]
    nan_o = [_record(i, {"word_perplexity": 10.0}) for i in range(6)]
    nan_m = [_record(i, {"word_perplexity": math.nan if i in (1, 3) else 12.0}) for i in range(6)]
    o = write_run(tmp_path / "o", {"ppl": inf_o, "ppl_nan": nan_o})
    m = write_run(tmp_path / "m", {"ppl": inf_m, "ppl_nan": nan_m})
    comp = compare_folders(o, m, iters=300)
    rows = {r["task"]: r for r in comp["rows"]}
    assert rows["ppl"]["difference"] == "inf" and rows["ppl"]["test"]["ci_high"] == "inf"
    assert rows["ppl"]["test"]["extra"]["inf_docs"] == [4]
    assert rows["ppl_nan"]["test"]["extra"]["nan_docs"] == [1, 3] and "p_value" not in rows["ppl_nan"]["test"]
    warnings = "\n".join(comp["warnings"])
    assert "task ppl, word_perplexity: 1 document(s) scored an infinite value (doc_id 4)" in warnings
    assert "task ppl_nan, word_perplexity: 2 document(s) scored NaN (doc_id 1, 3)" in warnings

    def refuse(token):
        raise ValueError(f"not standard JSON: {token}")

    written = write_comparison(comp, tmp_path / "out", plot=False)["json"].read_text()
    data = json.loads(written, parse_constant=refuse)
    assert data["rows"][0]["test"]["extra"]["difference"] == "inf"


def test_compare_carries_lm_eval_settings_to_both_conditions(tmp_path, capsys):
    """A researcher's settings in lm-eval's spelling (chat template, system instruction, extra model
    arguments, generation arguments) reach both conditions identically, on the real embedded model."""
    from conftest import mask_doc

    from lm_eval_achilles.cli import main
    from lm_eval_achilles.comparison.runs import load_run
    from lm_eval_achilles.models.loading import fingerprint, load_skeleton
    from lm_eval_achilles.resources import sample_data_dir

    mask = tmp_path / "mask.json"
    fp = fingerprint(load_skeleton("embedded"))
    mask.write_text(json.dumps(mask_doc(fp, [("model.layers.11.mlp.down_proj", 507)], curve=())))
    out = tmp_path / "cmp"
    argv = ["compare", "--mask", str(mask), "--tasks", "achilles_simpleqa", "--limit", "2", "--out", str(out)]
    argv += [
        "--data-dir",
        str(sample_data_dir()),
        "--apply_chat_template",
        "--system_instruction",
        "Answer in one word.",
    ]
    argv += ["--model_args", "max_length=512,add_bos_token=False", "--gen_kwargs", "max_gen_toks=4", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    runs = [load_run(out / name) for name in ("original", "masked")]
    for run in runs:
        cfg = run.config
        assert cfg["model_args"]["max_length"] == 512 and cfg["model_args"]["add_bos_token"] is False
        prompt = run.samples["achilles_simpleqa"][0]["arguments"]["gen_args_0"]["arg_0"]
        assert "<|im_start|>system\nAnswer in one word." in prompt and "<|im_start|>assistant" in prompt
        assert run.results.get("chat_template") and run.results.get("system_instruction") == "Answer in one word."
    assert runs[0].config["model_args"]["top_n"] == 0 and "top_n" not in runs[1].config["model_args"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model_args", "mask=x.json"], "--model_args mask=...: compare sets it per condition"),
        (["--model_args", "noequals"], "--model_args 'noequals': expected k=v,k=v"),
        (["--fewshot_as_multiturn"], "--fewshot_as_multiturn needs --apply_chat_template"),
    ],
)
def test_compare_settings_refused_before_any_run(tmp_path, capsys, extra, message):
    from lm_eval_achilles.cli import main

    out = tmp_path / "cmp"
    code = main(["compare", "--tasks", "achilles_simpleqa", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists()
