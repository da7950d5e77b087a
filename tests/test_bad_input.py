"""The bad-input matrix: every subcommand, every ``achilles_masked`` model argument and the Python API
against bad values. Each case must end in exactly one line, ``achilles: error: ...`` naming the value
(or an :class:`AchillesError` for lm-eval and the API), exit code 2, no traceback, nothing written and
no model loaded.

"No model loaded" is enforced by tripwires on the three ways a model gets loaded (``load_model``,
lm-eval's ``HFLM.__init__`` and ``lm_eval.simple_evaluate``): a case that reaches one fails the test.
Reading a model's *config* (``load_skeleton``, to check ``--modules`` or a mask before loading) is
allowed. Everything runs in process, so the whole matrix takes seconds.
"""

from __future__ import annotations

import json
import math

import pytest
from conftest import mask_doc

from lm_eval_achilles.cli import main
from lm_eval_achilles.errors import AchillesError

GOOD_MODULE = "model.layers.11.mlp.down_proj"  # 576 output channels in the embedded model


class Tripwire(BaseException):
    """Raised when a bad-input case gets as far as loading a model (BaseException: nothing catches it)."""


def _trip(*_args, **_kwargs):
    raise Tripwire("a bad-input case loaded a model or started an evaluation")


@pytest.fixture
def no_model(monkeypatch):
    from lm_eval.models.huggingface import HFLM

    import lm_eval_achilles.models.loading as loading

    monkeypatch.setattr(loading, "load_model", _trip)
    monkeypatch.setattr(HFLM, "__init__", _trip)


@pytest.fixture
def tripwires(no_model, monkeypatch):
    import lm_eval

    monkeypatch.setattr(lm_eval, "simple_evaluate", _trip)


@pytest.fixture(scope="module")
def embedded_fingerprint():
    from lm_eval_achilles.models.loading import fingerprint, load_skeleton

    return fingerprint(load_skeleton(None))


def _comparison_doc():
    row = {
        "task": "qa",
        "metric": "acc",
        "filter": "none",
        "n": 4,
        "original": 0.5,
        "masked": 0.25,
        "difference": -0.25,
        "higher_is_better": True,
        "kind": "binary",
        "scale": "value",
        "test": {"name": "mcnemar-exact"},
    }
    return {"format": "achilles-comparison/1", "rows": [row], "warnings": []}


@pytest.fixture
def ws(tmp_path, embedded_fingerprint):
    """A workspace of inputs, good and bad; the keys are the ``{placeholders}`` of the cases."""
    fp = embedded_fingerprint
    files = {
        "mask": mask_doc(fp, [(GOOD_MODULE, 507)]),
        "other": mask_doc("0123456789abcdef", [(GOOD_MODULE, 507)]),
        "badmod": mask_doc(fp, [("model.layers.99.mlp.down_proj", 1)]),
        "badch": mask_doc(fp, [(GOOD_MODULE, 5000)]),
        "nocrit": {**mask_doc(fp, [(GOOD_MODULE, 507)]), "neurons": []},
    }
    paths = {}
    for name, doc in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    paths["malformed"] = tmp_path / "malformed.json"
    paths["malformed"].write_text("{not json")
    paths["empty"] = tmp_path / "empty.txt"
    paths["empty"].write_text("  \n")
    paths["short"] = tmp_path / "short.txt"
    paths["short"].write_text("too short\n\nalso short\n")
    paths["file"] = tmp_path / "a_file.txt"
    paths["file"].write_text("not a folder\n")
    paths["cmp"] = tmp_path / "cmp"
    paths["cmp"].mkdir()
    (paths["cmp"] / "comparison.json").write_text(json.dumps(_comparison_doc()))
    # a folder holding the results of earlier runs of every command
    paths["done"] = tmp_path / "done"
    for rel in ("original/results.json", "comparison.json", "report.json", "methods/methods.json"):
        (paths["done"] / rel).parent.mkdir(parents=True, exist_ok=True)
        (paths["done"] / rel).write_text("{}")
    (paths["done"] / "compare").mkdir()
    (paths["done"] / "compare" / "comparison.json").write_text("{}")
    paths["emptydir"] = tmp_path / "emptydir"  # a folder with no checkpoint in it
    paths["emptydir"].mkdir()
    paths["jsonl"] = tmp_path / "train.jsonl"
    paths["jsonl"].write_text('{"prompt": "1+1?", "answer": "2"}\n')
    paths["nofield"] = tmp_path / "nofield.jsonl"
    paths["nofield"].write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?"}\n')
    paths["actfn"] = tmp_path / "actfn.json"
    paths["actfn"].write_text(json.dumps([["model.layers.3.mlp.act_fn", 5]]))
    (paths["done"] / "achilles-delta.json").write_text("{}")
    paths["out"] = tmp_path / "out"  # does not exist: a good output path
    paths["missing"] = tmp_path / "missing.json"
    paths["long"] = tmp_path / ("x" * 300 + ".json")  # the OS refuses the name: an OSError
    return tmp_path, {k: str(v) for k, v in paths.items()}


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


LOCATE = [
    (["--batch-size", "0"], "--batch-size: must be >= 1, got '0'"),
    (["--batch-size", "abc"], "--batch-size: must be an integer, got 'abc'"),
    (["--ranking-size", "0"], "--ranking-size: must be >= 1, got '0'"),
    (["--epsilon", "nan"], "--epsilon: must be a finite number, got 'nan'"),
    (["--epsilon", "-1"], "--epsilon: must be > 0, got '-1'"),
    (["--alpha", "nan"], "--alpha: must be a finite number, got 'nan'"),
    (["--alpha", "0"], "--alpha: must be > 0, got '0'"),
    (["--samples", "0"], "--samples: must be >= 1, got '0'"),
    (["--samples", "2.5"], "--samples: must be an integer, got '2.5'"),
    (["--step", "0"], "--step: must be >= 1, got '0'"),
    (["--max-steps", "0"], "--max-steps: must be >= 1, got '0'"),
    (["--seed", "-1"], "--seed: must be >= 0, got '-1'"),
    (["--scale", "inf"], "--scale: must be a finite number, got 'inf'"),
    (["--text", ""], "--text: must not be empty"),
    (["--text", "   "], "--text: must not be empty"),
    (["--test-text", ""], "--test-text: must not be empty"),
    (["--text-file", "{missing}"], "text file not found"),
    (["--text-file", "{empty}"], "empty.txt must not be empty"),
    (["--method", "telepathy"], "unknown method 'telepathy'"),
    (["--modules", "*nothing*"], "no candidate module matches '*nothing*'"),
    (["--modules", "re:("], "bad module regex '('"),
    (["--granularity", "neuron"], "--granularity: invalid choice: 'neuron'"),
    (["--search", "foo"], "--search: invalid choice: 'foo'"),
    (["--dtype", "float8"], "--dtype: invalid choice: 'float8'"),
    (["--model", "{out}/no-such-checkpoint"], "model folder not found"),
    (["--model", "{emptydir}"], "is a folder without config.json: not a transformers checkpoint"),
    (["--model", "embeded"], "unknown model 'embeded'; did you mean embedded?"),
    (["--device", "cuda:99"], "--device cuda:99: "),
    (["--epsilo", "2"], "unrecognized arguments: --epsilo 2 (see: achilles locate --help)"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]
LOCATE_OUT = [
    (["locate", "--out", "{cmp}"], "--out {cmp} is a folder; give a file name"),
    (["locate", "--out", "{file}/mask.json"], "is a file, not a folder"),
    (["locate", "--out", "{long}"], "File name too long"),
    (["locate"], "the following arguments are required: --out"),
]
COMPARE = [
    (["--limit", "nan"], "--limit: must be a finite number, got 'nan'"),
    (["--limit", "0"], "--limit: must be > 0, got '0'"),
    (["--limit", "-3"], "--limit: must be > 0, got '-3'"),
    (["--batch-size", "abc"], "--batch-size: must be an integer >= 1, auto or auto:N, got 'abc'"),
    (["--batch-size", "0"], "--batch-size: must be an integer >= 1, auto or auto:N, got '0'"),
    (["--batch-size", "auto:x"], "--batch-size: must be an integer >= 1, auto or auto:N, got 'auto:x'"),
    (["--num-fewshot", "-1"], "--num-fewshot: must be >= 0, got '-1'"),
    (["--bootstrap-iters", "0"], "--bootstrap-iters: must be >= 1, got '0'"),
    (["--top-n", "-1"], "--top-n: must be >= 0, got '-1'"),
    (["--top-n", "999"], "top_n=999 is larger than the ranking"),
    (["--scale", "nan"], "--scale: must be a finite number, got 'nan'"),
    (["--apply", "glue"], "--apply: invalid choice: 'glue'"),
    (["--metadata", "{{bad"], "--metadata is not valid JSON"),
    (["--metadata", "[1]"], "--metadata must be a JSON object"),
    (["--data-dir", "{missing}"], "--data-dir {missing} is not a folder"),
    (["--include-path", "{missing}"], "--include-path {missing} is not a folder"),
    (["--seed", "x"], "--seed: must be an integer, got 'x'"),
    (["--device", "cuda:99"], "--device cuda:99: "),
    (["--model_args", "top_n=3"], "--model_args top_n=...: compare sets it per condition"),
    (["--fewshot_as_multiturn"], "--fewshot_as_multiturn needs --apply_chat_template"),
]
COMPARE_OTHER = [
    (["compare", "--tasks", "", "--mask", "{mask}", "--out", "{out}"], "--tasks is required"),
    (["compare", "--tasks", " , ", "--mask", "{mask}", "--out", "{out}"], "--tasks is required"),
    (["compare", "--tasks", "qa", "--mask", "{missing}", "--out", "{out}"], "mask file not found"),
    (["compare", "--tasks", "qa", "--mask", "{malformed}", "--out", "{out}"], "malformed JSON"),
    (["compare", "--tasks", "qa", "--mask", "{other}", "--out", "{out}"], "mask was made for another model"),
    (["compare", "--tasks", "qa", "--mask", "{badmod}", "--out", "{out}"], "unknown module 'model.layers.99"),
    (["compare", "--tasks", "qa", "--mask", "{badch}", "--out", "{out}"], "channel 5000 out of range"),
    (["compare", "--tasks", "qa", "--mask", "{nocrit}", "--out", "{out}"], "selects no neurons"),
    (["compare", "--tasks", "qa", "--mask", "{mask}", "--out", "{file}"], "is an existing file; give a folder"),
    (["compare", "--tasks", "qa", "--mask", "{mask}", "--out", "{done}"], "already holds results"),
    (["compare", "--original", "{cmp}", "--masked", "{cmp}", "--out", "{done}"], "pass --overwrite"),
    (["compare", "--original", "{cmp}", "--out", "{out}"], "give both --original and --masked"),
    (["compare", "--tasks", "qa"], "the following arguments are required: --out"),
]
EXPORT = [
    (["export", "--mask", "{mask}", "--out", "{file}"], "--out {file} is an existing file; give a folder"),
    (["export", "--mask", "{mask}", "--out", "{cmp}"], "exists and is not empty"),
    (["export", "--mask", "{missing}", "--out", "{out}"], "mask file not found"),
    (["export", "--mask", "", "--out", "{out}"], "mask must not be empty"),
    (["export", "--mask", "{mask}", "--top-n", "-2", "--out", "{out}"], "--top-n: must be >= 0, got '-2'"),
    (["export", "--mask", "{mask}", "--top-n", "999", "--out", "{out}"], "top_n=999 is larger than the ranking"),
    (["export", "--mask", "{mask}", "--scale", "nan", "--out", "{out}"], "--scale: must be a finite number"),
    (["export", "--mask", "{mask}", "--gguf-file", "nope.gguf", "--out", "{out}"], "GGUF file not found"),
    (
        ["export", "--model", "{cmp}", "--gguf-file", "comparison.json", "--mask", "{mask}", "--out", "{out}"],
        "comparison.json is not a GGUF file",
    ),
    (["export", "--format", "gguf", "--model", "{cmp}", "--mask", "{mask}", "--out", "{out}"], "needs a GGUF source"),
    (["export", "--format", "gguf", "--streaming", "--mask", "{mask}", "--out", "{out}"], "never loads the model"),
    (["export", "--streaming", "--dtype", "float32", "--mask", "{mask}", "--out", "{out}"], "drop --dtype"),
    (
        ["export", "--streaming", "--model", "{cmp}", "--mask", "{mask}", "--out", "{out}"],
        "{cmp} is a folder without config.json: not a transformers checkpoint",
    ),
]
REPORT = [
    (["report", "{missing}", "--out", "{out}"], "mask file not found"),
    (["report", "{malformed}", "--out", "{out}"], "malformed JSON"),
    (["report", "{mask}", "--out", "{out}", "--extra-steps", "-1"], "--extra-steps: must be >= 0, got '-1'"),
    (["report", "{mask}", "--out", "{out}", "--max-new-tokens", "0"], "--max-new-tokens: must be >= 1, got '0'"),
    (["report", "{mask}", "--out", "{file}"], "is an existing file; give a folder"),
    (["report", "{mask}", "--out", "{done}", "--no-model"], "already holds results of an earlier run (report.json)"),
]
CHECK = [
    (["check", "{mask}", "--min-delta", "nan"], "--min-delta must be a finite number, got 'nan'"),
    (["check", "{mask}", "--max-delta", "inf"], "--max-delta must be a finite number, got 'inf'"),
    (["check", "{mask}", "--max-baseline-ppl", "nan"], "--max-baseline-ppl must be a finite number, got 'nan'"),
    (["check", "{mask}", "--min-critical-size", "-1"], "--min-critical-size must be >= 0, got '-1'"),
    (["check", "{mask}", "--max-critical-size", "abc"], "--max-critical-size must be an integer, got 'abc'"),
    (["check", "{cmp}", "--max-drop", "qa:acc=nan"], "the threshold must be finite"),
    (["check", "{cmp}", "--min-masked-score", "qa:acc=inf"], "the threshold must be finite"),
    (["check", "{cmp}", "--max-drop", "qa:nope=0.1"], "no metric 'nope'"),
    (["check", "{cmp}", "--max-drop", "nope:acc=0.1"], "no task 'nope'"),
    (["check", "{cmp}", "--max-drop", "qa-acc-0.1"], "expected TASK:METRIC=VALUE"),
    (["check", "{mask}"], "no rules given"),
    (["check", "{missing}", "--min-delta", "1"], "file not found"),
    (["check", "{cmp}", "--min-delta", "1"], "apply to a mask file, but no mask file was given"),
]
STUDY = [
    (["study", "nope", "--out", "{out}"], "unknown study 'nope'"),
    (["study", " , ", "--out", "{out}"], "no study named"),
    (["study", "methods", "--out", "{out}", "--samples", "0"], "--samples: must be >= 1, got '0'"),
    (["study", "methods", "--out", "{out}", "--trials", "0"], "--trials: must be >= 1, got '0'"),
    (["study", "methods", "--out", "{out}", "--epsilon", "nan"], "--epsilon: must be a finite number, got 'nan'"),
    (["study", "methods", "--out", "{out}", "--epsilon", "0"], "--epsilon: must be > 0, got '0'"),
    (["study", "methods", "--out", "{out}", "--alpha", "inf"], "--alpha: must be a finite number, got 'inf'"),
    (["study", "methods", "--out", "{out}", "--batch-size", "0"], "--batch-size: must be >= 1, got '0'"),
    (["study", "methods", "--out", "{out}", "--max-steps", "0"], "--max-steps: must be >= 1, got '0'"),
    (["study", "methods", "--out", "{out}", "--text", ""], "--text: must not be empty"),
    (["study", "methods", "--out", "{out}", "--text-file", "{empty}"], "must not be empty"),
    (["study", "methods", "--out", "{out}", "--eval-file", "{missing}"], "evaluation file not found"),
    (["study", "methods", "--out", "{out}", "--eval-file", "{short}"], "no evaluation text longer than 50"),
    (["study", "methods", "--out", "{out}", "--modules", "*nothing*"], "no candidate module matches"),
    (["study", "methods", "--out", "{file}"], "is an existing file; give a folder"),
    (["study", "methods", "--out", "{done}"], "already holds results of an earlier run (methods/methods.json)"),
]
DEMO = [
    (["demo", "--out", "{out}", "--limit", "-1"], "--limit: must be >= 1, got '-1'"),
    (["demo", "--out", "{out}", "--limit", "0"], "--limit: must be >= 1, got '0'"),  # one meaning: as compare
    (["demo", "--out", "{out}", "--batch-size", "0"], "--batch-size: must be >= 1, got '0'"),
    (["demo", "--out", "{out}", "--max-gen-toks", "-5"], "--max-gen-toks: must be >= 0, got '-5'"),
    (["demo", "--out", "{out}", "--max-new-tokens", "0"], "--max-new-tokens: must be >= 1, got '0'"),
    (["demo", "--out", "{out}", "--samples", "0"], "--samples: must be >= 1, got '0'"),
    (["demo", "--out", "{out}", "--bootstrap-iters", "0"], "--bootstrap-iters: must be >= 1, got '0'"),
    (["demo", "--out", "{out}", "--mask", "{missing}"], "mask file not found"),
    (["demo", "--out", "{out}", "--data-dir", "{missing}"], "is not a folder"),
    (["demo", "--out", "{out}", "--tasks", " , "], "no lm-eval task given"),
    (["demo", "--out", "{file}"], "is an existing file; give a folder"),
    (["demo", "--out", "{done}"], "already holds results of an earlier run (compare/comparison.json)"),
]
_FT = ["finetune", "--data", "{jsonl}", "--steps", "1", "--lr", "1e-3"]
FINETUNE = [
    (["finetune", "--data", "{missing}", "--steps", "1", "--lr", "1e-3", "--out", "{out}"], "data file not found"),
    (["finetune", "--data", "{empty}", "--steps", "1", "--lr", "1e-3", "--out", "{out}"], "is empty (no JSONL lines)"),
    (
        ["finetune", "--data", "{malformed}", "--steps", "1", "--lr", "1e-3", "--out", "{out}"],
        "malformed.json:1: not JSON",
    ),
    (["finetune", "--data", "{nofield}", "--steps", "1", "--lr", "1e-3", "--out", "{out}"], "nofield.jsonl:2: missing"),
    ([*_FT[:4], "0", "--lr", "1e-3", "--out", "{out}"], "--steps: must be >= 1, got '0'"),
    ([*_FT[:4], "-5", "--lr", "1e-3", "--out", "{out}"], "--steps: must be >= 1, got '-5'"),
    ([*_FT[:6], "0", "--out", "{out}"], "--lr: must be > 0, got '0'"),
    ([*_FT[:6], "nan", "--out", "{out}"], "--lr: must be a finite number, got 'nan'"),
    ([*_FT[:6], "inf", "--out", "{out}"], "--lr: must be a finite number, got 'inf'"),
    ([*_FT, "--neurons", "{badmod}", "--out", "{out}"], "unknown module 'model.layers.99"),
    ([*_FT, "--neurons", "{badch}", "--out", "{out}"], "channel 5000 out of range"),
    ([*_FT, "--neurons", "{actfn}", "--out", "{out}"], "cannot fine-tune neurons of 'model.layers.3.mlp.act_fn'"),
    ([*_FT, "--neurons", "{other}", "--out", "{out}"], "mask was made for another model"),
    ([*_FT, "--neurons", "{missing}", "--out", "{out}"], "neuron file not found"),
    ([*_FT, "--neurons", "critical", "--out", "{out}"], "--neurons critical needs --mask FILE"),
    ([*_FT, "--modules", "*nothing*", "--out", "{out}"], "no candidate module matches"),
    ([*_FT, "--out", "{done}"], "already holds results of an earlier run (achilles-delta.json)"),
    ([*_FT, "--out", "{file}"], "is an existing file; give a folder"),
    (["export", "--delta", "{missing}", "--out", "{out}"], "delta not found"),
    (["export", "--out", "{out}"], "give --mask (a mask to fold) and/or --delta"),
    (["data", "gsm_symbolic", "--out", "{out}", "--train", "-1"], "--train: must be >= 0, got '-1'"),
]
GENERAL = [
    (["telepathy"], "invalid choice: 'telepathy'"),
]
TRACK = [
    (["track", "embedded", "--out", "{out}"], "track needs at least two checkpoints, got 1"),
    (
        ["track", "embedded", "{out}/no-such-ckpt", "--out", "{out}"],
        "checkpoint 2 ({out}/no-such-ckpt) is not a folder",
    ),
    (["track", "--list", "{missing}", "--out", "{out}"], "checkpoint list not found"),
    (["check", "{mask}", "--baseline", "{other}", "--max-size-drop", "0"], "was located on another architecture"),
    (["check", "{mask}", "--max-size-drop", "0"], "--max-size-drop compare a new mask file and a baseline"),
]

CLI_CASES = (
    [(["locate", *a, "--out", "{out}/m.json", "--quiet"], m) for a, m in LOCATE]
    + LOCATE_OUT
    + [(["compare", "--tasks", "qa", "--mask", "{mask}", *a, "--out", "{out}"], m) for a, m in COMPARE]
    + COMPARE_OTHER
    + EXPORT
    + REPORT
    + CHECK
    + STUDY
    + DEMO
    + TRACK
    + FINETUNE
    + GENERAL
)


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_input(argv, message, ws, tripwires, capsys):
    root, paths = ws
    before = _snapshot(root)
    code = main([a.format(**paths) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("achilles: error: "), err
    assert message.format(**paths) in lines[0]
    assert _snapshot(root) == before, "a bad-input case wrote something"


MODEL_ARGS = [
    ("mask=", "mask must not be empty"),
    ("mask=   ", "mask must not be empty"),
    ("mask={missing}", "mask file not found"),
    ("mask={malformed}", "malformed JSON"),
    ("mask={mask},top_n=999", "top_n=999 is larger than the ranking"),
    ("mask={mask},top_n=-1", "top_n must be >= 0, got -1"),
    ("mask={mask},top_n=1.5", "top_n must be an integer, got 1.5"),
    ("mask={mask},top_n=abc", "top_n must be an integer, got 'abc'"),
    ("top_n=3", "top_n=3 needs a ranking"),
    ("mask={mask},scale=nan", "scale must be a finite number, got nan"),
    ("mask={mask},scale=inf", "scale must be a finite number, got inf"),
    ("mask={mask},scale=-inf", "scale must be a finite number, got -inf"),
    ("mask={mask},scale=big", "scale must be a number, got 'big'"),
    ("mask={mask},apply=glue", "unknown apply='glue'"),
    ("mask={mask},locate=true", "give either mask=PATH or locate=true"),
    ("locate=maybe", "locate must be true or false, got 'maybe'"),
    ("locate=true,locate_samples=0", "locate_samples must be >= 1, got 0"),
    ("locate=true,locate_samples=2.5", "locate_samples must be an integer, got 2.5"),
    ("locate=true,locate_epsilon=-1", "locate_epsilon must be > 0, got -1"),
    ("locate=true,locate_epsilon=nan", "locate_epsilon must be a finite number, got nan"),
    ("locate=true,locate_alpha=0", "locate_alpha must be > 0, got 0"),
    ("locate=true,locate_alpha=inf", "locate_alpha must be a finite number, got inf"),
    ("locate=true,locate_seed=-1", "locate_seed must be >= 0, got -1"),
    ("locate=true,locate_text=", "locate_text must not be empty"),
    ("locate=true,locate_search=foo", "unknown search 'foo'; choose galloping or linear"),
    ("locate_samples=10", "locate_samples only apply with locate=true"),
    ("locate=true,locate_sample=10", "unknown model argument 'locate_sample'; did you mean locate_samples?"),
    ("locate=true,locate_noise=10", "unknown model argument 'locate_noise'"),
    ("mask={mask},topn=3", "unknown model argument 'topn'; did you mean top_n?"),
    ("mask={mask},allow_fingerprint_mismatch=perhaps", "allow_fingerprint_mismatch must be true or false"),
    ("delta=", "delta must not be empty"),
    ("delta={missing}", "delta not found"),
    ("delta={mask}", "format must be 'achilles-delta/1'"),
]


@pytest.mark.parametrize("arg_string, message", MODEL_ARGS, ids=[c[0] for c in MODEL_ARGS])
def test_achilles_masked_bad_model_args(arg_string, message, ws, tripwires):
    """What ``lm_eval --model achilles_masked --model_args ...`` does with the string: refused before
    HFLM loads the model (lm-eval then stops before any evaluation)."""
    from lm_eval.api.registry import get_model

    from lm_eval_achilles.harness import lm_model  # noqa: F401  (registers achilles_masked)

    root, paths = ws
    before = _snapshot(root)
    with pytest.raises(AchillesError) as info:
        get_model("achilles_masked").create_from_arg_string(arg_string.format(**paths))
    assert message.format(**paths) in str(info.value)
    assert "\n" not in str(info.value)
    assert _snapshot(root) == before


EVAL_CASES = [(["eval", "--model", "achilles_masked", "--model_args", "mask=", "--tasks", "achilles_mmlu_pro"], "")]


def test_eval_bad_model_args(ws, no_model, capsys):
    """``achilles eval`` is lm-eval's command line: lm-eval logs its own INFO lines, then our one error
    line, before the model is loaded (lm-eval indexes its task folders first, hence one case only).
    lm-eval builds the model inside ``simple_evaluate``, so only the model tripwires apply here."""
    root, paths = ws
    before = _snapshot(root)
    assert main(EVAL_CASES[0][0]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("achilles: error:")]
    assert errors == ["achilles: error: mask must not be empty, got ''"]
    assert _snapshot(root) == before


def _api_cases():
    from lm_eval_achilles.comparison.check import run_check
    from lm_eval_achilles.finetune.train import TrainConfig
    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.locate import locate
    from lm_eval_achilles.models.loading import LoadedModel

    def tiny():
        from conftest import make_tiny_llama

        return LoadedModel(make_tiny_llama(), None, "tiny", "tiny")

    nan = math.nan
    return [
        ("LocatorConfig(alpha=nan)", lambda: LocatorConfig(alpha=nan), "alpha must be a finite number"),
        ("LocatorConfig(samples=0)", lambda: LocatorConfig(samples=0), "samples must be >= 1"),
        ("LocatorConfig(batch_size=0)", lambda: LocatorConfig(batch_size=0), "batch_size must be >= 1"),
        ("LocatorConfig(ranking_size=0)", lambda: LocatorConfig(ranking_size=0), "ranking size k must be >= 1"),
        ("LocatorConfig(seed=True)", lambda: LocatorConfig(seed=True), "seed must be an integer"),
        ("LocatorConfig(granularity)", lambda: LocatorConfig(granularity="x"), "unknown granularity 'x'"),
        ("LocatorConfig(search)", lambda: LocatorConfig(search="x"), "unknown search 'x'"),
        ("locate(epsilon=nan)", lambda: locate(tiny(), epsilon=nan), "epsilon must be a finite number"),
        ("locate(epsilon=0)", lambda: locate(tiny(), epsilon=0), "epsilon must be > 0"),
        ("locate(step=0)", lambda: locate(tiny(), step=0), "step must be >= 1"),
        ("locate(max_steps=0)", lambda: locate(tiny(), max_steps=0), "max_steps must be >= 1"),
        ("locate(scale=inf)", lambda: locate(tiny(), scale=math.inf), "scale must be a finite number"),
        ("locate(text='')", lambda: locate(tiny(), text=""), "probe text must not be empty"),
        ("locate(test_text=' ')", lambda: locate(tiny(), test_text=" "), "test text must not be empty"),
        ("locate(method)", lambda: locate(tiny(), method="x"), "unknown method 'x'"),
        ("locate(modules)", lambda: locate(tiny(), modules="*nothing*"), "no candidate module matches"),
        ("TrainConfig(steps=0)", lambda: TrainConfig(steps=0, lr=1e-3), "steps must be >= 1"),
        ("TrainConfig(lr=nan)", lambda: TrainConfig(steps=1, lr=nan), "lr must be a finite number"),
        ("TrainConfig(lr=-1)", lambda: TrainConfig(steps=1, lr=-1), "lr must be > 0"),
        ("run_check(nan)", lambda: run_check([], {"min_delta": [nan]}, {}), "--min-delta must be a finite number"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("call, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_python_api_bad_input(call, message):
    with pytest.raises(AchillesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_matrix_size_is_what_the_docs_say():
    """docs/cli.md states how many bad inputs this file covers; keep the number true."""
    from pathlib import Path

    total = len(CLI_CASES) + len(EVAL_CASES) + len(MODEL_ARGS) + len(API_CASES)
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert f"{total} bad inputs" in text, total
