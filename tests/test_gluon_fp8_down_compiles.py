"""The Gluon fp8 MoE down kernel of benchmarks/gluon_fp8_down.py compiles for sm_90a on a CPU in its default
configuration (BLOCK_M 128, BLOCK_N 128, 8 warps, 3 stages) and in its 256-wide paired form (BLOCK_M 64,
8 warps, 3 stages): no register spills, no ptxas wgmma serialization (C75xx), and one wgmma (one pair
of halves) kept in flight in the K loop (only ``wgmma.wait_group 1``, resp. ``2``, inside it).

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
variants = [down.Variant(128, 128, 8, 3), down.Variant(64, 256, 8, 3)]
reports = down.offline_reports(variants, with_triton=False) if down.HAS_GLUON else []
print(json.dumps({"has_gluon": down.HAS_GLUON, "reports": [dataclasses.asdict(r) for r in reports]}))
"""


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    result = run_offline(CHILD)
    if not result["has_gluon"]:
        pytest.skip("this Triton build has no triton.experimental.gluon")
    return result["reports"]


CASES = [pytest.param(0, 1, id="128x128-w8"), pytest.param(1, 2, id="64x256-paired-w8")]


@pytest.mark.parametrize(("index", "pendings"), CASES)
def test_down_compiles_without_spills(reports: list[dict[str, Any]], index: int, pendings: int) -> None:
    report = reports[index]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255, report["registers"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report


@pytest.mark.parametrize(("index", "pendings"), CASES)
def test_down_loop_keeps_wgmmas_in_flight(reports: list[dict[str, Any]], index: int, pendings: int) -> None:
    report = reports[index]
    assert pendings in report["ptx_waits"], report["ptx_waits"]
    in_loop = [p for p, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {pendings}, report["ttgir_waits"]
    warnings = report["ptxas_warnings"]
    assert not [w for w in warnings if "C75" in w or "serialized" in w], warnings
