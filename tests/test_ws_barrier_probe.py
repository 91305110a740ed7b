"""``benchmarks/ws_barrier_probe.py`` still compiles and still traces the warp-specialized K loop's CTA
barrier to the ring's mbarrier wait and release (session 14): offline sm_90a compiles of the 16-bit
Gluon down with those operations swapped out one at a time leave 1, 1, 1 and 0 ``BAR`` instructions
per K block under Triton 3.6. A later Triton that drops the barrier fails the first case: then the
probe's finding, and BENCHMARKS.md's account of it, need a new look.

Compile only (no GPU), each variant in its own child Python (Triton caches a compile by the helpers
it first resolved; tests/test_gluon_fp8_down_compiles.py says why the child drops
``TRITON_INTERPRET``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("triton")

CHILD = """
import json
from kernels.gluon_support import HAS_GLUON
out = {{"has_gluon": HAS_GLUON}}
if HAS_GLUON:
    from benchmarks.ws_barrier_probe import VARIANTS, k_loop_barriers
    out["barriers"] = k_loop_barriers(*VARIANTS[{name!r}])
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    ("variant", "barriers"), [("as committed", 1), ("no release", 1), ("no wait", 1), ("neither", 0)]
)
def test_the_k_loops_barrier_comes_from_the_rings_wait_and_release(
    gluon_child: Callable[[str], dict[str, Any]], variant: str, barriers: int
) -> None:
    assert gluon_child(CHILD.format(name=variant))["barriers"] == barriers
