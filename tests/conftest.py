"""Shared setup for the plugin's own tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# pytester's in-process runs restore sys.modules afterwards, so a module first imported inside one
# (torch, when `--moetune` probes the GPU for the report header) is dropped and imported again by the
# next run; torch does not survive a second import in one process (it segfaults). Importing it here
# keeps it in the snapshot that pytester restores.
import torch  # noqa: F401

from benchmarks.offline_child import run_offline


@pytest.fixture(scope="session")
def gluon_child() -> Callable[[str], dict[str, Any]]:
    """Runs offline-compile code in a child Python (``benchmarks.offline_child.run_offline``) and
    returns its JSON; skips the test, saying why, where the child reports ``has_gluon`` false (a
    Triton build without ``triton.experimental.gluon``)."""

    def run(code: str) -> dict[str, Any]:
        result = run_offline(code)
        if not result["has_gluon"]:
            pytest.skip("this Triton build has no triton.experimental.gluon")
        return result

    return run
