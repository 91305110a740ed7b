"""The Gluon fp8 MoE gate/up kernel (``kernels/gluon_gate_up.py``, through benchmarks/gluon_fp8_moe.py)
compiles for sm_90a on a CPU in its two schedules (wide: BLOCK_M 64; halves: BLOCK_M 128; 8 warps,
4 stages): no register spills, no ptxas wgmma serialization (C75xx), one wgmma kept in flight in the K
loop (``wgmma.wait_group 1``), one m64n128 wgmma per warpgroup holding gate and up columns, and the
per-column choice of the gate or up scale folded away (no per-element select in the promotion).

Compile only (no GPU, nothing is executed); a few seconds. Like tests/test_gluon_fp8_gemm_compiles.py the
compile runs in a child Python without ``TRITON_INTERPRET`` (the repo's conftest sets it on GPU-less
machines, and Gluon cannot compile under the interpreter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("triton")

CHILD = """
import dataclasses, json, re
from benchmarks import gluon_fp8_moe as moe
out = {"has_gluon": moe.HAS_GLUON}
def wgmma_shapes(ptx):
    return sorted(set(re.findall(r"wgmma\\.mma_async\\.sync\\.aligned\\.(m\\d+n\\d+k\\d+)", ptx)))
if moe.HAS_GLUON:
    variant = moe.Variant(64, 8, 4)
    (out["report"],) = [dataclasses.asdict(r) for r in moe.offline_reports([variant], with_triton=False)]
    ptx = moe.compile_gluon_moe(variant).asm["ptx"]
    out["shapes"] = wgmma_shapes(ptx)
    out["fma"] = len(re.findall(r"fma\\.rn\\.f32", ptx))
    out["selp"] = len(re.findall(r"\\bselp", ptx))
    halves = moe.Variant(128, 8, 4)
    (out["halves"],) = [dataclasses.asdict(r) for r in moe.offline_reports([halves], with_triton=False)]
    halves_ptx = moe.compile_gluon_moe(halves).asm["ptx"]
    out["halves_shapes"] = wgmma_shapes(halves_ptx)
    copy = r"cp\\.async\\.bulk\\.tensor\\.(\\d)d\\.shared"
    out["weight_copies"] = [re.findall(copy, p) for p in (ptx, halves_ptx)]
    gather = r"cp\\.async\\.c[ag]\\.shared"
    out["gathers"] = [len(re.findall(gather, p)) for p in (ptx, halves_ptx)]
    for bm in (64, 128):
        v = moe.Variant(bm, 8, 4, sorted_x=True)
        (out[f"sorted{bm}"],) = [dataclasses.asdict(r) for r in moe.offline_reports([v], with_triton=False)]
        p = moe.compile_gluon_moe(v).asm["ptx"]
        out[f"sorted{bm}_copies"] = re.findall(copy, p)
        out[f"sorted{bm}_gathers"] = len(re.findall(gather, p))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return gluon_child(CHILD)


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


def test_weights_come_by_one_3d_tma_copy_per_k_block(compiled: dict[str, Any]) -> None:
    """Every weight copy of both schedules is 3-D (the gate and up rows of a slot in one box): no
    2-D box copies are left (the hq store is a 2-D shared-to-global copy, not matched here); x is
    gathered by cp.async."""
    for copies, gathers in zip(compiled["weight_copies"], compiled["gathers"], strict=True):
        assert copies and set(copies) == {"3"}, copies
        assert gathers > 0


@pytest.mark.parametrize("block_m", [64, 128])
def test_sorted_x_comes_by_one_2d_tma_copy_and_no_gather(compiled: dict[str, Any], block_m: int) -> None:
    """With ``sorted_x`` the x rows are a contiguous (block_m, 128) box: one 2-D TMA load per K block
    beside the 3-D weight copy, no cp.async left, and the same registers and loop budget."""
    report = compiled[f"sorted{block_m}"]
    assert report["ok"], report["error"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report
    copies = compiled[f"sorted{block_m}_copies"]
    assert copies.count("2") == copies.count("3") > 0, copies
    assert compiled[f"sorted{block_m}_gathers"] == 0
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, report["ttgir_waits"]
    assert 0 < report["loop_instructions"] <= 360, report["loop_instructions"]


@pytest.mark.parametrize(("name", "most"), [("report", 360), ("halves", 400)])
def test_k_loop_sass_stays_lean(compiled: dict[str, Any], name: str, most: int) -> None:
    """The Gluon gate/up is issue-bound (BENCHMARKS.md, run 55), so its K loop's instruction count is
    its speed, offline. With one weight copy per K block: wide 345, halves 381 SASS instructions per
    two K blocks and 8 CTA barriers (470 / 423 and 14 / 10 with 64-row boxes)."""
    report = compiled[name]
    assert 0 < report["loop_instructions"] <= most, report["loop_instructions"]
    assert report["loop_barriers"] <= 8, report["loop_barriers"]


def test_halves_128x128_w8_compiles_without_spills_and_one_wgmma_in_flight(compiled: dict[str, Any]) -> None:
    """block_m 128 runs the halves schedule: two passes of the wide loop over a 128-row weight slot,
    one m64n128 wgmma per warpgroup, both passes keeping one wgmma in flight."""
    report = compiled["halves"]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255, report["registers"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert len(in_loop) >= 8 and set(in_loop) == {1}, report["ttgir_waits"]  # 4 per pass
    assert not [w for w in report["ptxas_warnings"] if "serialized" in w], report["ptxas_warnings"]
    assert compiled["halves_shapes"] == ["m64n128k32"]


def test_wide_promotion_has_no_per_element_select(compiled: dict[str, Any]) -> None:
    """The gate-or-up scale is chosen per column; that choice must fold to constants per register.
    A thread holds 64 accumulator values, so a select per element would add at least 64 ``selp``
    per promotion, and there are 2 promotions in the loop and up to 2 in the tail."""
    assert compiled["fma"] >= 4 * 64, compiled["fma"]
    assert compiled["selp"] < 64, compiled["selp"]
