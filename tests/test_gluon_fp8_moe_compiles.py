"""The Gluon fp8 MoE gate/up kernel (``kernels/gluon_gate_up.py``, through benchmarks/gluon_fp8_moe.py)
compiles for sm_90a on a CPU in its working configuration (wide schedule, BLOCK_M 64, 8 warps, 4
stages): no register spills, no ptxas wgmma serialization (C75xx), one wgmma kept in flight in the K
loop (``wgmma.wait_group 1``), one m64n128 wgmma per warpgroup holding gate and up columns, and the
per-column choice of the gate or up scale folded away (no per-element select in the promotion).

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
import dataclasses, json, re
from benchmarks import gluon_fp8_moe as moe
out = {"has_gluon": moe.HAS_GLUON}
if moe.HAS_GLUON:
    variant = moe.Variant(64, 8, 4)
    (out["report"],) = [dataclasses.asdict(r) for r in moe.offline_reports([variant], with_triton=False)]
    ptx = moe.compile_gluon_moe(variant).asm["ptx"]
    out["shapes"] = sorted(set(re.findall(r"wgmma\\.mma_async\\.sync\\.aligned\\.(m\\d+n\\d+k\\d+)", ptx)))
    out["fma"] = len(re.findall(r"fma\\.rn\\.f32", ptx))
    out["selp"] = len(re.findall(r"\\bselp", ptx))
    (out["stagger"],) = [dataclasses.asdict(r) for r in moe.offline_reports([moe.Variant(128, 8, 3)],
                                                                           with_triton=False)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    result = run_offline(CHILD)
    if not result["has_gluon"]:
        pytest.skip("this Triton build has no triton.experimental.gluon")
    return result


def test_wide_64x128_w8_compiles_without_spills(compiled: dict[str, Any]) -> None:
    report = compiled["report"]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255, report["registers"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report


def test_wide_loop_keeps_one_wgmma_in_flight(compiled: dict[str, Any]) -> None:
    report = compiled["report"]
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, report["ttgir_waits"]
    assert not [w for w in report["ptxas_warnings"] if "serialized" in w], report["ptxas_warnings"]


def test_wide_issues_one_m64n128_wgmma_per_warpgroup(compiled: dict[str, Any]) -> None:
    assert compiled["shapes"] == ["m64n128k32"]


def test_stagger_128x128_w8_compiles_with_the_shared_loader(compiled: dict[str, Any]) -> None:
    """block_m 128 runs the stagger schedule on the wide kernel's loader (128-row boxes, gate and up
    halves of one 256-row slot). It spills 160 B and ptxas serializes its wgmmas (C7514) as before
    the loader was shared (BENCHMARKS.md, run 36: still 4.9x main's Triton bm128 tile); this pins
    that it compiles and keeps one wgmma in flight in its loop."""
    report = compiled["stagger"]
    assert report["ok"], report["error"]
    assert report["spill_stores"] <= 160, report
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, report["ttgir_waits"]


def test_wide_promotion_has_no_per_element_select(compiled: dict[str, Any]) -> None:
    """The gate-or-up scale is chosen per column; that choice must fold to constants per register.
    A thread holds 64 accumulator values, so a select per element would add at least 64 ``selp``
    per promotion, and there are 2 promotions in the loop and up to 2 in the tail."""
    assert compiled["fma"] >= 4 * 64, compiled["fma"]
    assert compiled["selp"] < 64, compiled["selp"]
