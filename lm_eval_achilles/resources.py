"""Files shipped inside the package: the lm-eval task folder and the sample documents.

In an installed wheel both live inside ``lm_eval_achilles/``; in a source checkout the task folder is
``task_configs/`` at the repository root. Nothing here depends on the current directory.
"""

from __future__ import annotations

from pathlib import Path

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.harness.tasks import TASKS

PACKAGE_DIR = Path(__file__).resolve().parent

#: The sample documents' names (``<name>.jsonl``, one record per line in the hub dataset's schema): one per
#: task of the task table.
SAMPLE_NAMES = tuple(t.name for t in TASKS)


def task_configs_dir() -> Path:
    """This package's lm-eval task folder (``task_configs``)."""
    for candidate in (PACKAGE_DIR / "task_configs", PACKAGE_DIR.parent / "task_configs"):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise AchillesError(f"the lm-eval task folder task_configs/ is missing from {PACKAGE_DIR}; reinstall the package")


def sample_data_dir() -> Path:
    """The packaged sample documents: a few records per task in each benchmark's hub schema, used by
    ``achilles demo`` and the tests (pass ``--metadata '{"data_dir": DIR}'`` to point lm-eval at them)."""
    folder = PACKAGE_DIR / "sample_data"
    missing = [n for n in SAMPLE_NAMES if not (folder / f"{n}.jsonl").is_file()]
    if missing:
        raise AchillesError(f"packaged sample data missing in {folder}: {', '.join(missing)}; reinstall the package")
    return folder


#: The ``data_dir`` value that means "the packaged sample documents" (``--data-dir sample``,
#: ``--metadata '{"data_dir": "sample"}'``, ``ACHILLES_DATA_DIR=sample``), wherever the package is installed.
SAMPLE = "sample"


def resolve_data_dir(value) -> Path:
    """A data folder as the user named it: ``sample`` = :func:`sample_data_dir`, else the path (``~`` expanded).
    A folder of that name in the current directory wins over the keyword."""
    path = Path(str(value)).expanduser()
    if str(value) == SAMPLE and not path.is_dir():
        return sample_data_dir()
    return path
