"""The GitHub Actions example (examples/achilles-regression.yml) runs as written: it is valid YAML with the
steps a regression gate needs, and every ``achilles`` command in it is one the CLI accepts (parsed by the
real argument parser, values included)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import tomllib
import yaml

from lm_eval_achilles.cli import UsageError, build_parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "achilles-regression.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _steps() -> list[dict]:
    jobs = _workflow()["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def achilles_commands() -> list[list[str]]:
    """Every ``achilles ...`` command of the workflow's shell steps, continuation lines joined, shell
    variables replaced by example values and the trailing shell logic (``|| ...``) cut."""
    out = []
    for step in _steps():
        script = step.get("run", "")
        script = re.sub(r"\\\n\s*", " ", script)
        for line in script.splitlines():
            line = line.strip()
            if not line.startswith("achilles "):
                continue
            line = line.split("||")[0].replace('"${CHECKPOINT}"', "./checkpoint")
            out.append(shlex.split(line)[1:])
    return out


def test_workflow_has_the_gate_steps():
    wf = _workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "push" in on and "pull_request" in on
    uses = [s.get("uses", "").split("@")[0] for s in _steps()]
    for action in ("actions/checkout", "actions/cache", "actions/download-artifact", "actions/upload-artifact"):
        assert action in uses
    install = next(s["run"] for s in _steps() if "pip install" in s.get("run", ""))
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert f'"{name} @ ${{ACHILLES_REPO}}"' in install  # installs this package from its repository
    assert "download.pytorch.org/whl/cpu" in install  # not a multi-GB CUDA build on a CPU runner
    commands = [c[0] for c in achilles_commands()]
    assert commands.count("locate") == 1 and commands.count("check") == 2


@pytest.mark.parametrize("argv", achilles_commands(), ids=lambda a: " ".join(a[:3]))
def test_every_achilles_command_parses(argv):
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except UsageError as exc:
        pytest.fail(f"achilles {' '.join(argv)}: {exc}")
    assert not extra, f"unrecognized arguments: {extra}"
    assert args.command == argv[0]
    if argv[0] == "check":
        assert args.junit == "report.xml"
