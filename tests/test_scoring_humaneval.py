from lm_eval_achilles.harness.scoring import humaneval


def test_fenced_python_block():
    r = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert humaneval.extract_code(r) == "def add(a, b):\n    return a + b"


def test_fenced_block_without_def_is_skipped():
    r = "```python\nx = 1\n```\n\ndef f():\n    return x\n"
    assert humaneval.extract_code(r) == "def f():\n    return x"


def test_plain_fence_and_inline_fence():
    assert humaneval.extract_code("```\ndef g(): pass\n```") == "def g(): pass"
    assert humaneval.extract_code("```python def h(): return 1```") == "def h(): return 1"


def test_line_scan_keeps_indented_blank_and_def_lines():
    r = "Sure.\ndef f(x):\n    y = x\n\n\treturn y\ndef g():\n    pass\nThat is all.\n    not kept"
    assert humaneval.extract_code(r) == "def f(x):\n    y = x\n\n\treturn y\ndef g():\n    pass"


def test_def_without_colon_returns_whole_response():
    assert humaneval.extract_code("we could def ine it") == "we could def ine it"


def test_body_only_completion_extracts_nothing():
    assert humaneval.extract_code("    return a + b\n") == ""
    assert humaneval.extract_code("") == ""


def test_score_extraction_counts_regardless_of_filter():
    nested = "def f(x):\n    if x:\n        return 1\n    return 0"  # 8-space run: meaningless
    assert humaneval.score(nested) == {
        "extraction_rate": 1.0,
        "extraction_rate_meaningful": 0.0,
        "meaningless_rate": 1.0,
    }
    assert humaneval.score("def f(x):\n    return x") == {
        "extraction_rate": 1.0,
        "extraction_rate_meaningful": 1.0,
        "meaningless_rate": 0.0,
    }
    assert humaneval.score("    return a + b")["extraction_rate"] == 0.0
