"""The Gluon fp8 MoE gate/up kernel of benchmarks/gluon_fp8_moe.py compiles for sm_90a on a CPU in its working
configuration (paired schedule, BLOCK_M 64, 8 warps, 4 stages): no register spills, no ptxas wgmma
serialization (C75xx), and one (gate, up) wgmma pair kept in flight in the K loop (``wgmma.wait_group 2``).

Compile only (no GPU, nothing is executed); a few seconds. Like tests/test_gluon_fp8_gemm_compiles.py the
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
from benchmarks import gluon_fp8_moe as moe
variant = moe.Variant("paired", 64, 8, 4)
reports = moe.offline_reports([variant], with_triton=False) if moe.HAS_GLUON else []
print(json.dumps({"has_gluon": moe.HAS_GLUON, "reports": [dataclasses.asdict(r) for r in reports]}))
"""


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = run_offline(CHILD)
    if not result["has_gluon"]:
        pytest.skip("this Triton build has no triton.experimental.gluon")
    (only,) = result["reports"]
    return only


def test_paired_64x128_w8_compiles_without_spills(report: dict[str, Any]) -> None:
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255, report["registers"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report


def test_paired_loop_keeps_one_wgmma_pair_in_flight(report: dict[str, Any]) -> None:
    assert 2 in report["ptx_waits"], report["ptx_waits"]
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {2}, report["ttgir_waits"]
    assert not [w for w in report["ptxas_warnings"] if "serialized" in w], report["ptxas_warnings"]
