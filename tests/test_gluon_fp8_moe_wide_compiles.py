"""The prototype wide fp8 MoE gate/up of benchmarks/gluon_fp8_moe_wide.py compiles for sm_90a on a CPU:
one m64n128 wgmma per warpgroup (gate and up halves of the same 64 h columns), no register spills, no
ptxas wgmma serialization (C75xx), one wgmma kept in flight in the K loop, and the per-column choice
of the gate or up scale folded away (the promotion costs what the paired kernel's does).

Compile only, in a child Python without ``TRITON_INTERPRET`` (``benchmarks/offline_child.py``). The
kernel has not run on a GPU; ``python3 benchmarks/gluon_fp8_moe.py --gpu`` checks and times it.
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
    wide = moe.Variant("wide", 64, 8, 4)
    (out["report"],) = [dataclasses.asdict(r) for r in moe.offline_reports([wide], with_triton=False)]
    paired = moe.compile_gluon_moe(moe.Variant("paired", 64, 8, 4))
    for name, kernel in (("wide", moe.compile_gluon_moe(wide)), ("paired", paired)):
        ptx = kernel.asm["ptx"]
        shapes = re.findall(r"wgmma\\.mma_async\\.sync\\.aligned\\.(m\\d+n\\d+k\\d+)", ptx)
        out[name] = {"shapes": sorted(set(shapes)), "fma": len(re.findall(r"fma\\.rn\\.f32", ptx)),
                     "selp": len(re.findall(r"\\bselp", ptx))}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    result = run_offline(CHILD)
    if not result["has_gluon"]:
        pytest.skip("this Triton build has no triton.experimental.gluon")
    return result


def test_wide_compiles_without_spills_or_serialized_wgmmas(compiled: dict[str, Any]) -> None:
    report = compiled["report"]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255 and report["spill_stores"] == report["spill_loads"] == 0, report
    assert not [w for w in report["ptxas_warnings"] if "serialized" in w], report["ptxas_warnings"]
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, report["ttgir_waits"]


def test_wide_issues_m64n128_wgmmas_where_paired_issues_m64n64(compiled: dict[str, Any]) -> None:
    assert compiled["wide"]["shapes"] == ["m64n128k32"]
    assert compiled["paired"]["shapes"] == ["m64n64k32"]


def test_wide_promotion_costs_what_paired_does(compiled: dict[str, Any]) -> None:
    """The gate-or-up scale is chosen per column; that choice must fold to constants per register,
    or every promotion would pay a select per element."""
    assert compiled["wide"]["fma"] == compiled["paired"]["fma"]
    assert compiled["wide"]["selp"] <= compiled["paired"]["selp"]
