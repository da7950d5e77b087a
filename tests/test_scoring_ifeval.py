"""IFEval with lm-eval's official checkers + the quality filter; works without NLTK data files."""

import pytest

from lm_eval_achilles.harness.scoring import ifeval


def check(iid, response, prompt="p", **kwargs):
    return ifeval.follow_instructions([iid], [kwargs], prompt, response)[0]


def test_registry_loads_offline_and_reports_splitter():
    assert "punctuation:no_comma" in ifeval.registry()
    assert ifeval.sentence_splitter() in ("punkt_tab", "PunktSentenceTokenizer() (untrained, offline)")


def test_no_comma():
    assert check("punctuation:no_comma", "The sun is a bright star.")
    assert not check("punctuation:no_comma", "The sun, a star, is bright.")


def test_lowercase():
    assert check("change_case:english_lowercase", "the dog ran home and slept all day long.")
    assert not check("change_case:english_lowercase", "The dog ran home.")


def test_number_words():
    text = "Cats are small furry animals that like to sleep a lot during the day and hunt at night for fun."
    assert check("length_constraints:number_words", text, relation="at least", num_words=15)
    assert not check("length_constraints:number_words", text, relation="at least", num_words=50)
    assert check("length_constraints:number_words", text, relation="less than", num_words=50)


def test_number_sentences_needs_a_sentence_splitter():
    text = "Apples are red. They taste sweet. People eat them."
    assert check("length_constraints:number_sentences", text, relation="less than", num_sentences=5)
    assert not check("length_constraints:number_sentences", text, relation="less than", num_sentences=3)
    assert check("length_constraints:number_sentences", text, relation="at least", num_sentences=3)


def test_capital_word_frequency_uses_word_tokenize():
    text = "This is GREAT. It is VERY GOOD indeed."
    assert check("change_case:capital_word_frequency", text, capital_relation="at least", capital_frequency=3)
    assert not check("change_case:capital_word_frequency", text, capital_relation="less than", capital_frequency=3)


def test_keywords_and_end_phrase_together():
    ids = ["keywords:existence", "startend:end_checker"]
    kwargs = [
        {"keywords": ["wave", "blue"], "end_phrase": None},
        {"end_phrase": "Is there anything else I can help with?", "keywords": None},
    ]
    good = "The blue sea sends a wave to the shore. Is there anything else I can help with?"
    assert ifeval.follow_instructions(ids, kwargs, "p", good) == [True, True]
    assert ifeval.follow_instructions(ids, kwargs, "p", "The blue sea is calm.") == [False, False]


def test_repeat_prompt_gets_the_prompt():
    prompt = "Say hello. Then explain why."
    assert check(
        "combination:repeat_prompt",
        "Say hello. Then explain why. Hello because it is polite.",
        prompt=prompt,
        prompt_to_repeat=prompt,
    )


def test_meaningless_response_follows_nothing():
    # would pass no_comma and lowercase, but the quality filter rejects it first
    assert ifeval.follow_instructions(
        ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}], "p", "aaaaaaaaaaaa"
    ) == [False, False]


def test_score_and_errors():
    doc = {
        "prompt": "p",
        "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
        "kwargs": [{}, {}],
    }
    assert ifeval.score(doc, "the sun, it shines brightly today") == {
        "prompt_level_strict_acc": 0.0,
        "inst_level_strict_acc": [0.0, 1.0],
        "prompt_level_strict_acc_unfiltered": 0.0,
        "inst_level_strict_acc_unfiltered": [0.0, 1.0],
        "meaningless_rate": 0.0,
    }
    with pytest.raises(ValueError, match="unknown IFEval instruction"):
        ifeval.follow_instructions(["no:such"], [{}], "p", "some fine text here")
    with pytest.raises(ValueError, match="2 instructions but 1 kwargs"):
        ifeval.follow_instructions(["punctuation:no_comma"] * 2, [{}], "p", "some fine text here")


def test_two_responses_is_capped_by_the_filter_but_scored_unfiltered():
    """``combination:two_responses`` needs a ``******`` separator, a run of 6 that the paper's filter
    rejects: the paper's metric can never pass it, the unfiltered one reads the official checker."""
    doc = {"prompt": "p", "instruction_id_list": ["combination:two_responses"], "kwargs": [{}]}
    good = "God is called the Creator.\n******\nSome call God the Almighty."
    assert ifeval.check_instructions(doc["instruction_id_list"], doc["kwargs"], "p", good) == [True]
    assert ifeval.score(doc, good) == {
        "prompt_level_strict_acc": 0.0,
        "inst_level_strict_acc": [0.0],
        "prompt_level_strict_acc_unfiltered": 1.0,
        "inst_level_strict_acc_unfiltered": [1.0],
        "meaningless_rate": 1.0,
    }
    # without the six asterisks the official checker fails it too: no passing answer survives the filter
    for sep in ("*****", "***", "------"):
        assert ifeval.check_instructions(["combination:two_responses"], [{}], "p", good.replace("******", sep)) == [
            False
        ]


def test_unfiltered_scores_meaningless_text_like_the_official_checker():
    ids, kwargs = ["punctuation:no_comma"], [{}]
    assert ifeval.check_instructions(ids, kwargs, "p", "aaaaaaaaaaaa") == [True]
    assert ifeval.follow_instructions(ids, kwargs, "p", "aaaaaaaaaaaa") == [False]
    assert ifeval.check_instructions(ids, kwargs, "p", "   ") == [False]  # official strict: empty follows nothing


_STOCK_PROBE = r"""
import json, sys
import langdetect, nltk

DOC = {
    "key": 1,
    "prompt": "p",
    "instruction_id_list": [
        "change_case:capital_word_frequency",
        "length_constraints:number_sentences",
        "language:response_language",
    ],
    "kwargs": [
        {"capital_relation": "at least", "capital_frequency": 2},
        {"relation": "less than", "num_sentences": 5},
        {"language": "en"},
    ],
}
RESPONSE = "This is GREAT news for everyone. It is VERY good indeed. We are all happy about it."


def stock():
    from lm_eval.tasks.ifeval import instructions_util, utils

    try:
        outcome = utils.process_results(DOC, [RESPONSE])
    except Exception as exc:  # offline without punkt_tab, the stock task fails: that must stay so
        outcome = type(exc).__name__
    return {
        "outcome": outcome,
        "util_nltk_is_nltk": instructions_util.nltk is nltk,
        "sentence_tokenizer_module": instructions_util._get_sentence_tokenizer.__module__,
        "langdetect_seed": langdetect.DetectorFactory.seed,
        "download_is_nltk": nltk.download.__module__,
    }


def ours():
    from lm_eval_achilles.harness.scoring import ifeval

    return ifeval.score(DOC, RESPONSE)


order = sys.argv[1]
out = {}
if order == "stock-only":
    out["stock"] = stock()
elif order == "ours-then-stock":
    out["ours"] = ours()
    out["stock"] = stock()
else:  # stock-then-ours-then-stock
    out["stock_before"] = stock()
    out["ours"] = ours()
    out["stock"] = stock()
print("RESULT " + json.dumps(out))
"""


def _probe(order):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _STOCK_PROBE, order], capture_output=True, text=True, env=env, cwd=root, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_stock_ifeval_task_is_untouched_in_the_same_process():
    """This package's offline NLTK workaround and langdetect seed live in its own copy of lm-eval's
    checkers: lm-eval's ``ifeval`` task, before or after ours in one process, behaves as without us."""
    alone = _probe("stock-only")["stock"]
    assert alone["util_nltk_is_nltk"] and alone["langdetect_seed"] is None
    assert alone["sentence_tokenizer_module"] == "lm_eval.tasks.ifeval.instructions_util"
    after = _probe("ours-then-stock")
    assert after["stock"] == alone
    assert after["ours"]["inst_level_strict_acc"] == [1.0, 1.0, 1.0]  # ours works offline
    both = _probe("stock-then-ours-then-stock")
    assert both["stock_before"] == alone and both["stock"] == alone
    assert both["ours"] == after["ours"]


# ---- the guard around lm-eval's private IFEval modules ---------------------------------------------


def test_installed_lm_eval_has_the_layout_the_private_copy_needs():
    """Fails loudly when an lm-eval upgrade moves, renames or drops what the private copy uses."""
    from importlib.metadata import version

    folder = ifeval.lm_eval_checkers_folder()  # the version and the three files
    assert sorted(p.name for p in folder.glob("instructions*.py")) == [
        "instructions.py",
        "instructions_registry.py",
        "instructions_util.py",
    ]
    copies = ifeval._load_private_checkers(offline=True)
    for name, attrs in ifeval.EXPECTED_ATTRIBUTES.items():
        assert all(hasattr(copies[name], attr) for attr in attrs), name
    checker = copies["instructions_registry"].INSTRUCTION_DICT["punctuation:no_comma"]("punctuation:no_comma")
    checker.build_description()
    assert checker.check_following("no comma here") and not checker.check_following("one, comma")
    assert callable(checker.get_instruction_args)
    assert ifeval._LOWEST <= ifeval._release(version("lm_eval")) < ifeval._BEYOND


def test_unsupported_lm_eval_version_names_the_supported_range():
    folder = ifeval.lm_eval_checkers_folder()
    for version in ("0.4.9", "0.6.0", "1.0"):
        with pytest.raises(ifeval.IFEvalLayoutError, match=r"supports lm-eval >=0\.4\.10,<0\.6; installed: lm-eval"):
            ifeval.check_layout(version, folder)
    ifeval.check_layout("0.4.10", folder)
    ifeval.check_layout("0.5.2.dev0", folder)


def test_missing_checker_file_or_attribute_is_a_clear_error(tmp_path):
    (tmp_path / "instructions_util.py").write_text("import nltk\n")  # no _get_sentence_tokenizer
    with pytest.raises(ifeval.IFEvalLayoutError, match=r"has no instructions\.py, instructions_registry\.py"):
        ifeval.check_layout("0.4.13", tmp_path)
    (tmp_path / "instructions.py").write_text("")
    (tmp_path / "instructions_registry.py").write_text("INSTRUCTION_DICT = {}\n")
    with pytest.raises(ifeval.IFEvalLayoutError, match=r"lack instructions_util\._get_sentence_tokenizer; supported"):
        ifeval._load_private_checkers(offline=True, folder=tmp_path)


def test_pyproject_requires_the_supported_lm_eval_range():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"lm-eval{ifeval.LM_EVAL_SUPPORTED}"' in text
