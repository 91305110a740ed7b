"""The Gluon fp8 MoE down kernel of benchmarks/gluon_fp8_down.py compiles for sm_90a on a CPU in its default
configuration (BLOCK_M 128, BLOCK_N 128, 8 warps, 3 stages): no register spills, no ptxas wgmma
serialization (C75xx), and one wgmma kept in flight in the K loop (``wgmma.wait_group 1`` only).

Compile only (no GPU, nothing is executed); a few seconds. Like tests/test_gluon_fp8_moe_compiles.py the
compile runs in a child Python without ``TRITON_INTERPRET`` (the repo's conftest sets it on GPU-less
machines, and Gluon cannot compile under the interpreter).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.offline_child import run_offline

pytest.importorskip("triton")

CHILD = """
import dataclasses, json
from benchmarks import gluon_fp8_down as down
variant = down.Variant(128, 128, 8, 3)
reports = down.offline_reports([variant], with_triton=False) if down.HAS_GLUON else []
print(json.dumps({"has_gluon": down.HAS_GLUON, "reports": [dataclasses.asdict(r) for r in reports]}))
"""


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = run_offline(CHILD)
    if not result["has_gluon"]:
        pytest.skip("this Triton build has no triton.experimental.gluon")
    (only,) = result["reports"]
    return only


def test_down_128x128_w8_compiles_without_spills(report: dict[str, Any]) -> None:
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255, report["registers"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report


def test_down_loop_keeps_one_wgmma_in_flight(report: dict[str, Any]) -> None:
    assert 1 in report["ptx_waits"], report["ptx_waits"]
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, report["ttgir_waits"]
    warnings = report["ptxas_warnings"]
    assert not [w for w in warnings if "C75" in w or "serialized" in w], warnings
