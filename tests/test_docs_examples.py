"""The command examples in README.md and docs/cli.md, docs/protocols.md, docs/finetune.md run as written
for an installed user: every ``achilles`` line parses with the real argument parser (flags and values),
none names a path that exists only in a source checkout, and the path helpers they use work."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lm_eval_achilles.cli import UsageError, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
#: usage pages (docs/results.md records commands that were run, from a checkout, and is not a usage page)
PAGES = ["README.md", "docs/cli.md", "docs/protocols.md", "docs/method.md", "docs/finetune.md"]
CHECKOUT_ONLY = ("lm_eval_achilles/sample_data", "--include_path task_configs", "--include-path task_configs")


def _commands():
    out = []
    for page in PAGES:
        path = ROOT / page
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for kind, block in re.findall(r"```(bash|sh|console)?\n(.*?)```", text, flags=re.S):
            block = re.sub(r"\\\n\s*", " ", block)
            for line in block.splitlines():
                line = line.strip()
                if kind == "console":  # a transcript: only the "$ " lines are commands
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                if line.startswith(("achilles ", "lm_eval ")):
                    out.append((page, line.split("  #")[0].split(" # ")[0].split(" || ")[0].strip()))
    return out


COMMANDS = _commands()


def test_examples_were_found():
    assert len([c for c in COMMANDS if c[1].startswith("achilles ")]) >= 30


@pytest.mark.parametrize("page, line", COMMANDS, ids=[f"{p}: {c[:60]}" for p, c in COMMANDS])
def test_example_runs_as_written(page, line):
    for bad in CHECKOUT_ONLY:
        assert bad not in line, f"{page}: {line!r} needs a source checkout ({bad})"
    if not line.startswith("achilles ") or line.startswith(("achilles eval", "achilles --")):
        return  # lm_eval's own command line
    argv = shlex.split(line.replace("$(achilles paths --tasks)", "TASKS"))[1:]
    if any(a.startswith("[") or a.endswith("...") for a in argv):
        return  # a synopsis line ("achilles check MASK... [rules]"), not a command
    try:
        args, extra = build_parser().parse_known_args(argv)
    except UsageError as exc:
        pytest.fail(f"{page}: {line!r}: {exc}")
    assert not extra, f"{page}: {line!r}: unrecognized arguments {extra}"


def test_paths_command_prints_the_installed_folders(capsys):
    assert main(["paths", "--tasks"]) == 0
    tasks = Path(capsys.readouterr().out.strip())
    assert tasks.is_dir() and (tasks / "achilles_mmlu_pro.yaml").is_file()
    assert main(["paths", "--sample-data"]) == 0
    sample = Path(capsys.readouterr().out.strip())
    assert (sample / "mmlu_pro.jsonl").is_file()
    assert main(["paths"]) == 0 and "sample_data" in capsys.readouterr().out


def test_data_dir_sample_means_the_packaged_documents(tmp_path, monkeypatch):
    from lm_eval_achilles.harness.task_data import data_dir
    from lm_eval_achilles.resources import resolve_data_dir, sample_data_dir

    monkeypatch.chdir(tmp_path)  # an empty folder, as a user's
    assert data_dir({"data_dir": "sample"}) == sample_data_dir() == resolve_data_dir("sample")
    (tmp_path / "sample").mkdir()  # a folder of that name here wins
    assert resolve_data_dir("sample") == Path("sample")
