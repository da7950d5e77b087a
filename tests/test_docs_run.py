"""The usage pages' examples that run offline are run as written, in order, from one empty folder, with
the console scripts of this interpreter's environment (in CI, a non-editable ``pip install .``): the
embedded model, the packaged sample documents, nothing from the source checkout. Console transcripts
are checked against what the command prints and its exit code. Every other example is listed in
``NOT_RUN`` with the reason, so a new example must be either run here or explained
(tests/test_docs_examples.py parses all of them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs_examples import COMMANDS, PAGES, ROOT

pytestmark = pytest.mark.slow

SCRIPTS = Path(sys.executable).parent


def _norm(line: str) -> str:
    return " ".join(line.split())


#: (page, command as written, expected exit code), run in this order in one folder: later commands use
#: what earlier ones wrote (mask.json, cmp/).
RUN = [
    ("README.md", "achilles locate --out mask.json", 0),
    ("README.md", "achilles check mask.json --min-critical-size 5", 1),  # a one-neuron set: the rule fails
    (
        "docs/cli.md",
        "achilles compare --mask mask.json --tasks achilles_mmlu_pro,achilles_wikitext --data-dir sample "
        "--gen-kwargs max_gen_toks=50 --out cmp/",
        0,
    ),
    (
        "README.md",
        "achilles check cmp --min-original-score achilles_mmlu_pro:acc=0.25 "
        "--max-drop achilles_wikitext:token_perplexity=0.5",
        1,
    ),
    ("docs/cli.md", "achilles check mask.json --min-critical-size 2 --min-delta 1", 1),
    ("docs/cli.md", "achilles check cmp --min-drop '*:token_perplexity=3'", 0),
    (
        "docs/cli.md",
        'lm_eval --model achilles_masked --model_args top_n=0 --include_path "$(achilles paths --tasks)" '
        '--tasks achilles,achilles_ppl --metadata \'{"data_dir": "sample"}\'',
        0,
    ),
    ("docs/cli.md", "achilles report mask.json --out report/", 0),
    ("docs/cli.md", "achilles report mask.json --out figure2/ --no-model", 0),
    ("docs/cli.md", "achilles export --mask mask.json --out masked-model", 0),
    ("docs/cli.md", "achilles data gsm_symbolic --out data/", 0),
]

_PLACEHOLDERS = ("MODEL", "./checkpoint", "./my-checkpoint", "...", "new/", "accepted/", "out/original", "./run/")
_PLACEHOLDERS += ("checkpoints.txt", "TASK_CONFIGS", "tuned/", "probe.txt", "mask_file", "[rules]")
#: why an example is not run here (the first rule that matches a line)
NOT_RUN = [
    (lambda c: "meta-llama/" in c or "HuggingFaceTB/" in c, "loads a model from the Hugging Face hub"),
    (lambda c: any(p in c for p in _PLACEHOLDERS), "names a placeholder (your model, checkpoints or files)"),
    (
        lambda c: (
            c.startswith("achilles eval") or c.startswith("lm_eval --model achilles_masked --model_args pretrained")
        ),
        "reads the benchmarks' hub datasets",
    ),
    (
        lambda c: c.startswith(("achilles demo", "achilles study")),
        "minutes on a 2-core machine; tests/test_installed.py runs the demo, tests/test_studies.py every study",
    ),
    (
        lambda c: c.startswith("achilles data humaneval"),
        "downloads the HumanEval wheel from PyPI; tests/test_task_data.py converts a wheel built in the test",
    ),
    (
        lambda c: c.startswith("achilles locate --"),
        "a locator variant; tests/test_locate*.py and tests/test_rankers.py run each on the embedded model",
    ),
]


def _reason(command: str) -> str | None:
    return next((why for rule, why in NOT_RUN if rule(command)), None)


def _transcripts() -> dict[str, tuple[list[str], int]]:
    """``$ command`` lines of the console blocks -> (the output lines shown under it, the exit code
    stated in a ``# exit code N`` comment, else 0)."""
    out: dict[str, tuple[list[str], int]] = {}
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
            command = None
            for line in block.splitlines():
                if line.startswith("$ "):
                    command = _norm(line[2:])
                    out[command] = ([], 0)
                elif command is not None:
                    shown, rc = out[command]
                    m = re.search(r"\s+# exit code (\d+)\s*$", line)
                    if m:
                        rc, line = int(m.group(1)), line[: m.start()]
                    out[command] = ([*shown, line.rstrip()], rc)
    return out


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _same_output(shown: str, printed: str) -> bool:
    """Equal text; numbers within 1 % (another CPU may round the last digit differently)."""
    if _NUMBER.sub("#", shown) != _NUMBER.sub("#", printed):
        return False
    pairs = zip(_NUMBER.findall(shown), _NUMBER.findall(printed))
    return all(abs(float(a) - float(b)) <= 0.01 * max(abs(float(a)), 1e-12) for a, b in pairs)


def test_every_example_is_run_or_explained():
    documented = {_norm(c) for _, c in COMMANDS}
    run = {_norm(c) for _, c, _ in RUN}
    for page, command, _ in RUN:
        assert _norm(command) in documented, f"{page} no longer shows {command!r}: update RUN"
    unexplained = [c for c in sorted(documented - run) if _reason(c) is None]
    assert not unexplained, f"examples neither run here nor explained in NOT_RUN: {unexplained}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("user")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ACHILLES_DATA_DIR")}
    env["PYTHONSAFEPATH"] = "1"  # never import from the current directory
    env["PATH"] = f"{SCRIPTS}{os.pathsep}{env.get('PATH', '')}"  # this environment's achilles and lm_eval
    return env


@pytest.mark.parametrize("page, command, rc", RUN, ids=[c[:70] for _, c, _ in RUN])
def test_example_runs_from_an_empty_folder(folder, page, command, rc):
    for script in ("achilles", "lm_eval"):
        assert (SCRIPTS / script).is_file(), f"{SCRIPTS / script} not found: pip install . into this environment"
    proc = subprocess.run(["bash", "-c", command], cwd=folder, env=_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == rc, f"{page}: {command!r} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    transcript = _transcripts().get(_norm(command))
    if transcript is not None:
        shown, shown_rc = transcript
        assert shown_rc == rc
        printed = [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]
        assert len(printed) == len(shown), f"{page}: {command!r} printed {printed}, the page shows {shown}"
        for s, p in zip(shown, printed):
            assert _same_output(s, p), f"{page}: {command!r} printed {p!r}, the page shows {s!r}"
