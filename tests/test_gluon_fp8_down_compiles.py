"""The Gluon fp8 MoE down kernel (``kernels/gluon_down.py``, through benchmarks/gluon_fp8_down.py)
compiles for sm_90a on a CPU in its block_m 128 configuration (BLOCK_N 128, 8 math warps, 4 stages),
its 256-wide block_m 64 form (8 math warps, 4 stages) and its 4-warp block_m 64 form (BLOCK_N 128, 3
stages): no register spills, no ptxas wgmma serialization (C75xx), one wgmma kept in flight in the K
loop (only ``wgmma.wait_group 1`` inside it), and, the point of the warp-specialized schedule, at
most 2 CTA barriers per two K blocks in the math warps' loop (8 when they issued the refills). The
256-wide tile issues one m64n128 wgmma per warpgroup and picks its two w2 scales per column without
a per-element select. The 16-bit form (bf16 h and w2, block_k 64, no scales) at the 16-bit space's
three tiles: no spills, one wgmma in flight, m64n256k16 wgmmas for the 128 x 256 default.

Compile only (no GPU, nothing is executed); a few seconds. Like tests/test_gluon_fp8_moe_compiles.py the
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
from benchmarks import gluon_fp8_down as down
out = {"has_gluon": down.HAS_GLUON}
if down.HAS_GLUON:
    variants = [down.Variant(128, 128, 8, 4), down.Variant(64, 256, 8, 4), down.Variant(64, 128, 4, 3),
                down.Variant(128, 128, 8, 5)]
    out["reports"] = [dataclasses.asdict(r) for r in down.offline_reports(variants, with_triton=False)]
    ptx = down.compile_gluon_down(variants[1]).asm["ptx"]
    out["shapes"] = sorted(set(re.findall(r"wgmma\\.mma_async\\.sync\\.aligned\\.(m\\d+n\\d+k\\d+)", ptx)))
    out["selp"] = len(re.findall(r"\\bselp", ptx))
    bf16 = [down.Variant(128, 256, 8, 3), down.Variant(128, 128, 8, 5), down.Variant(64, 256, 8, 4)]
    reports16 = down.offline_reports(bf16, with_triton=False, block_scale=False)
    out["bf16"] = [dataclasses.asdict(r) for r in reports16]
    ptx16 = down.compile_gluon_down(bf16[0], block_scale=False).asm["ptx"]
    shape = r"wgmma\\.mma_async\\.sync\\.aligned\\.(m\\d+n\\d+k\\d+)"
    out["bf16_shapes"] = sorted(set(re.findall(shape, ptx16)))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return gluon_child(CHILD)


CASES = [pytest.param(0, id="128x128-w8"), pytest.param(1, id="64x256-w8"), pytest.param(2, id="64x128-w4"),
         pytest.param(3, id="128x128-w8-s5")]  # the last: the default's down at block_m 128 up to I = 2048


@pytest.mark.parametrize("index", CASES)
def test_down_compiles_without_spills(compiled: dict[str, Any], index: int) -> None:
    report = compiled["reports"][index]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255, report["registers"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report


@pytest.mark.parametrize("index", CASES)
def test_down_loop_keeps_one_wgmma_in_flight(compiled: dict[str, Any], index: int) -> None:
    report = compiled["reports"][index]
    assert 1 in report["ptx_waits"], report["ptx_waits"]
    # The K loop is the innermost loop (inside the persistent loop over tiles, whose tail waits for 0).
    innermost = max(depth for _, depth in report["ttgir_waits"])
    in_k_loop = [p for p, depth in report["ttgir_waits"] if depth == innermost]
    assert innermost == 2 and set(in_k_loop) == {1}, report["ttgir_waits"]
    warnings = report["ptxas_warnings"]
    assert not [w for w in warnings if "C75" in w or "serialized" in w], warnings


@pytest.mark.parametrize("index", CASES)
def test_down_math_loop_meets_few_cta_barriers(compiled: dict[str, Any], index: int) -> None:
    report = compiled["reports"][index]
    assert report["loop_instructions"] > 0, report["ptxas_warnings"]
    assert report["loop_barriers"] <= 2, report["loop_barriers"]


def test_down_256_wide_issues_m64n128_and_folds_its_scale_choice(compiled: dict[str, Any]) -> None:
    """A thread holds 64 accumulator values of the 64 x 256 tile: a select per element would add at
    least 64 ``selp`` per promotion."""
    assert compiled["shapes"] == ["m64n128k32"]
    assert compiled["selp"] < 64, compiled["selp"]


BF16_CASES = [pytest.param(0, id="bf16-128x256-s3"), pytest.param(1, id="bf16-128x128-s5"),
              pytest.param(2, id="bf16-64x256-s4")]  # the 16-bit space's Gluon downs, the first its default


@pytest.mark.parametrize("index", BF16_CASES)
def test_16_bit_down_keeps_one_wgmma_in_flight_without_spills(compiled: dict[str, Any], index: int) -> None:
    """The 16-bit form (no scales: block_k 64, the accumulator added to in place): within the shared
    memory, no spills, no serialized wgmmas, ``wgmma.wait_group 1`` alone in the K loop."""
    report = compiled["bf16"][index]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255 and report["spill_stores"] == report["spill_loads"] == 0, report
    assert report["shared_bytes"] <= 227 * 1024, report["shared_bytes"]
    innermost = max(depth for _, depth in report["ttgir_waits"])
    assert innermost == 2 and {p for p, d in report["ttgir_waits"] if d == innermost} == {1}, report
    assert not [w for w in report["ptxas_warnings"] if "C75" in w or "serialized" in w], report


def test_16_bit_down_wgmma_shape(compiled: dict[str, Any]) -> None:
    """A 128 x 256 tile on 8 warps: each warpgroup issues 64 x 256 wgmmas of K 16 (bf16)."""
    assert compiled["bf16_shapes"] == ["m64n256k16"]
