"""``pytest_moetune.fileio``: atomic writes, and the up-front check of where a run will write.

Tests run as root on some machines, where a folder's mode bits do not stop a write, so the check's
view of writability (``os.access``) is patched where a folder must look read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_moetune import fileio


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``os.access`` (as ``fileio`` calls it) say ``folder`` cannot be written."""
    real = os.access
    monkeypatch.setattr(fileio.os, "access", lambda p, mode: Path(p) != folder and real(p, mode))


def test_an_existing_file_in_a_read_only_folder_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file itself may be writable, but its atomic rewrite and its lock file are made beside it."""
    cache = tmp_path / "c.json"
    cache.write_text("{}")
    read_only(monkeypatch, tmp_path)
    assert fileio.unwritable_reason(cache) == f"{tmp_path} is not writable"
    assert fileio.unwritable_reason(tmp_path / "new.json") == f"{tmp_path} is not writable"


def test_a_folder_is_checked_itself_once_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "baselines"
    assert fileio.unwritable_reason(folder, folder=True) is None  # made later, in tmp_path
    folder.mkdir()
    read_only(monkeypatch, folder)
    assert fileio.unwritable_reason(folder, folder=True) == f"{folder} is not writable"
    assert fileio.unwritable_reason(tmp_path / "other", folder=True) is None


@pytest.mark.parametrize(
    ("name", "folder", "why"),
    [
        ("a-file", True, "{p} is a file, not a folder"),
        ("a-folder", False, "{p} is a folder, not a file"),
        ("a-file/x.json", False, "{parent} is a file, so {p} cannot be made"),
    ],
    ids=["file-for-folder", "folder-for-file", "file-as-parent"],
)
def test_the_wrong_kind_of_path_is_named(tmp_path: Path, name: str, folder: bool, why: str) -> None:
    (tmp_path / "a-file").write_text("kept")
    (tmp_path / "a-folder").mkdir()
    path = tmp_path / name
    assert fileio.unwritable_reason(path, folder=folder) == why.format(p=path, parent=tmp_path / "a-file")
    assert (tmp_path / "a-file").read_text() == "kept"


def test_atomic_write_keeps_the_old_file_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.json"
    fileio.atomic_write_text(path, "old")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        fileio.atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["b.json"]
