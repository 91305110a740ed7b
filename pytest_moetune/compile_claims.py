"""Parallel tuners (one per pytest-xdist worker) share the compiling instead of repeating it.

Before a tuner compiles a tactic it claims the tactic's compile units: the kernels a runner names
with its optional ``compile_units(problem, tactic)`` (tactics share kernels: the kernels runner
names each GEMM's kernel), else the tactic itself. A tactic with a unit that another worker has
claimed is compiled last, when Triton's on-disk cache (shared by the workers of one machine) most
likely holds that kernel already. A claim only changes the order of the compiling, never what is
compiled or timed.

Claims are empty files created with ``O_CREAT | O_EXCL``, which is atomic on a local file system,
in a folder the xdist controller makes for the run and removes after it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class CompileClaims:
    """A folder of claim files shared by the tuners of one run."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"compile-claims folder {str(self.folder)!r} does not exist")

    def claim(self, key: str) -> bool:
        """True for the first caller of ``key`` in any process sharing the folder, False after."""
        try:
            os.close(os.open(self._path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        return True

    def taken(self, key: str) -> bool:
        """Whether some process has claimed ``key`` (without claiming it)."""
        return self._path(key).exists()

    def _path(self, key: str) -> Path:
        return self.folder / hashlib.sha256(key.encode()).hexdigest()[:32]
