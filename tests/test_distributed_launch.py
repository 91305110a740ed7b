"""The distributed suite, launched the way users launch it, on CPU ranks (gloo, Triton interpreter)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ranks", [2, 4])
def test_suites_distributed_passes_on_cpu_ranks(ranks: int) -> None:
    beside = Path(sys.executable).with_name("torchrun")
    torchrun = str(beside) if beside.exists() else shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun (torch's launcher) is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU ranks even on a GPU machine
    command = [torchrun, "--standalone", f"--nproc-per-node={ranks}", "-m", "pytest", "suites/distributed"]
    done = subprocess.run(
        [*command, "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("5 passed") == ranks, done.stdout[-2000:]
