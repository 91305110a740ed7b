"""Atomic file writes shared by caches, baselines, reports and exports."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the umask (read by setting it back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` with ``text`` atomically: temp file in the same folder, fsync, ``os.replace``.

    The file keeps its permission bits (a new one gets the umask's); parent folders are created; on
    any error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def unwritable_reason(path: str | os.PathLike[str], *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) could not be written later, or ``None``.

    Checked before any work is done, creating nothing: ``path`` is a folder where a file is wanted
    (or a file where a folder is), one of its parents is a file, or the folder that would take the
    writes is not writable: an existing folder ``path`` itself, else its nearest existing parent (a
    file is written atomically, through a temporary file and a lock file beside it, so its folder
    must be writable even when the file exists).
    """
    path = Path(path)
    mismatch = wrong_kind(path, folder=folder)
    if mismatch is not None:
        return mismatch
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, so {path} cannot be made"
            existing = path if folder and path.exists() else parent
            if not os.access(existing, os.W_OK):
                return f"{existing} is not writable"
            return None
    return None


def wrong_kind(path: str | os.PathLike[str], *, folder: bool = False) -> str | None:
    """Why ``path`` is not what is wanted: a file where a folder is (``folder``), a folder where a
    file is; ``None`` when it is right or does not exist."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    if not folder and path.is_dir():
        return f"{path} is a folder, not a file"
    return None
