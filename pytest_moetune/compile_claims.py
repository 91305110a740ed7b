"""Parallel tuners (one per pytest-xdist worker) share the compiling instead of repeating it.

Before a tuner compiles a tactic it claims it. A tactic that another worker has claimed is
compiled last, when Triton's on-disk cache (shared by the workers of one machine) most likely holds
it already. The claim key is the runner, its source hash, the dtype and the tactic. Kernels that
also specialize on a shape may differ under one key; then a claim only changes the order of the
compiling, never what is compiled or timed.

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
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        try:
            os.close(os.open(self.folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        return True
