"""Run offline-compile code in a child Python without ``TRITON_INTERPRET`` (no triton import here).

The repo's conftest sets ``TRITON_INTERPRET=1`` on machines without a GPU. Under it every
``@triton.jit`` function, Triton's own ``cdiv`` among them, becomes an interpreter object that can
neither be compiled nor imported into Gluon. So the Gluon compile tests run their compile in a child
process that has the variable unset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_offline(code: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run ``code`` in a child Python at the repo root, without ``TRITON_INTERPRET``. The code prints
    one JSON object on its last stdout line, which is returned; a failing child raises
    ``RuntimeError`` with the end of its stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"offline compile child failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
