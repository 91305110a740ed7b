"""``benchmarks/fp8_promotion_probe.py`` compiles both ways offline (sm_90a, no GPU): the persistent
fp8 gate/up as committed, and with the block-scaled K loop swapped for the probe's unscaled one.
Under Triton 3.6 (session 16) the committed K loop issues 131.5 instructions per K block and warp,
the probe's 49, both at 168 registers without spills; the probe must stay a probe of the promotion
alone (same ring, much shorter loop), or its GPU timing measures something else.

Each variant compiles in its own child Python (Triton caches a compile by the helpers it first
resolved; tests/test_gluon_fp8_down_compiles.py says why the child drops ``TRITON_INTERPRET``).
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
    from benchmarks.fp8_promotion_probe import offline_report
    out["report"] = offline_report({variant!r})
print(json.dumps(out))
"""


def test_the_unscaled_probe_keeps_the_ring_and_drops_the_promotion(
    gluon_child: Callable[[str], dict[str, Any]],
) -> None:
    committed = gluon_child(CHILD.format(variant="committed"))["report"]
    unscaled = gluon_child(CHILD.format(variant="unscaled"))["report"]
    for report in (committed, unscaled):
        assert report["error"] == "" and report["spills"] == 0, report
    assert committed["registers"] == unscaled["registers"] == 168
    assert unscaled["loop_barriers"] >= 1  # the ring's wait and release, as committed
    assert unscaled["instructions_per_k_block"] < committed["instructions_per_k_block"] / 2


def test_noload_keeps_the_promotion_but_not_its_loads_and_prefetch_compiles_alike(
    gluon_child: Callable[[str], dict[str, Any]],
) -> None:
    """Session 17's two variants of the same loop (``_ws_k_loop_ahead``): ``noload`` keeps the 64 FMAs
    per K block and warp but no scale loads (112.5 instructions against the committed 131.5),
    ``prefetch`` loads every scale two wgmmas ahead (139); both at the committed registers."""
    committed = gluon_child(CHILD.format(variant="committed"))["report"]
    noload = gluon_child(CHILD.format(variant="noload"))["report"]
    prefetch = gluon_child(CHILD.format(variant="prefetch"))["report"]
    for report in (noload, prefetch):
        assert report["error"] == "" and report["spills"] == 0, report
        assert report["registers"] == committed["registers"] and report["loop_barriers"] == 2
    per_block = {r["variant"]: r["instructions_per_k_block"] for r in (committed, noload, prefetch)}
    assert per_block["noload"] < per_block["committed"] < per_block["prefetch"], per_block
    assert per_block["noload"] >= 64 + 40, per_block  # the FMAs are still there (the unscaled loop: 49)
