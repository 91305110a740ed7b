"""The persistent warp-specialized Gluon gate/up (``kernels/gluon_gate_up_ws.py``, through
``benchmarks/gluon_gate_up_ws.py``) compiles for sm_90a on a CPU at the default's 5-stage ring and at
4 stages, and its gathering form (x's codes by ``cp.async`` from the loader warps) at 5: no register
spills, no ptxas wgmma serialization (C75xx), one wgmma kept in flight in the K
loop it shares with the down (``kernels.gluon_down._ws_k_loop``), at most 2 CTA barriers per two K
blocks in the math warps' loop, and shared memory within what ``kernels.tactics`` budgets for the
tile (the ring, the fp32 stash of pass 0 and the two hq staging tiles, all live at once). The 16-bit
form (bf16 x and w1, one pass of 128 gate and 128 up rows per tile) at 3 and 4 stages: the same,
with one CTA barrier per K block (``benchmarks/ws_barrier_probe.py`` says where it comes from); and
its gathering twin (x's rows by ``cp.async`` from the loader warps), the same.

Compile only (no GPU); the kernel's bits and speed are checked on the GPU
(``suites/kernels/test_correctness_gpu.py``, BENCHMARKS.md). The compile runs in a child Python
without ``TRITON_INTERPRET`` (see tests/test_gluon_fp8_down_compiles.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("triton")

CHILD = """
import json
from kernels.gluon_support import HAS_GLUON
out = {"has_gluon": HAS_GLUON}
if HAS_GLUON:
    from benchmarks.gluon_gate_up_ws import offline
    out["reports"] = offline([5, 4]) + offline([5], gather=True)
    out["reports16"] = offline([3, 4], bits=16) + offline([3, 4], bits=16, gather=True)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return gluon_child(CHILD)


@pytest.mark.parametrize("index", [pytest.param(0, id="s5"), pytest.param(1, id="s4"),
                                   pytest.param(2, id="gathering-s5")])  # fmt: skip
def test_persistent_gate_up_compiles_lean(compiled: dict[str, Any], index: int) -> None:
    from kernels.tactics import _SMEM_LIMIT, GemmTile, _gluon_smem_bytes

    report = compiled["reports"][index]
    assert report["ok"], report["error"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report
    warnings = report["ptxas_warnings"]
    assert not [w for w in warnings if "C75" in w or "serialized" in w], warnings
    innermost = max(depth for _, depth in report["ttgir_waits"])
    assert {p for p, depth in report["ttgir_waits"] if depth == innermost} == {1}, report["ttgir_waits"]
    assert 0 < report["loop_barriers"] <= 2, report["loop_barriers"]
    stages = report["num_stages"]
    tile = GemmTile(128, 128, 8, 8, stages, tma=True, gluon=True, sorted_x=index < 2, persistent=True)
    budget = _gluon_smem_bytes("gate_up", 128, tile)
    assert budget <= report["shared_bytes"] <= budget + 1024 <= _SMEM_LIMIT, (report["shared_bytes"], budget)


@pytest.mark.parametrize("stages", [3, 4], ids=["s3", "s4"])
@pytest.mark.parametrize("sorted_x", [pytest.param(True, id="sorted_x"), pytest.param(False, id="gathering")])
def test_16_bit_persistent_gate_up_compiles_lean(compiled: dict[str, Any], sorted_x: bool,
                                                 stages: int) -> None:  # fmt: skip
    from kernels.tactics import _SMEM_LIMIT_16BIT_GLUON, GemmTile, _gluon_smem_bytes

    report = compiled["reports16"][(0 if sorted_x else 2) + stages - 3]
    assert report["ok"], report["error"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report
    assert not [w for w in report["ptxas_warnings"] if "C75" in w or "serialized" in w], report
    innermost = max(depth for _, depth in report["ttgir_waits"])
    assert {p for p, depth in report["ttgir_waits"] if depth == innermost} == {1}, report["ttgir_waits"]
    assert report["loop_barriers"] == 1, report["loop_barriers"]  # four m64n256k16 wgmmas per K block
    tile = GemmTile(128, 64, 8, 8, stages, tma=True, gluon=True, sorted_x=sorted_x, persistent=True)
    budget = _gluon_smem_bytes("gate_up", 128, tile, elem=2)
    used = report["shared_bytes"]
    assert budget <= used <= budget + 1024 <= _SMEM_LIMIT_16BIT_GLUON, (used, budget)
