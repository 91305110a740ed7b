"""The prototype warp-specialized fp8 MoE gate/up of benchmarks/gluon_fp8_moe_ws.py compiles for sm_90a
on a CPU: 8 math warps at 240 registers and 4 loader warps at 24 (``setmaxnreg``), no register spills,
no ptxas wgmma serialization (C75xx), only m64n128k32 wgmmas with one kept in flight in the K loop, the
wide kernel's promotion, and the ready/empty barrier counts the loader and math partitions rely on.

Compile only, in a child Python without ``TRITON_INTERPRET`` (``benchmarks/offline_child.py``). On
the H100, ``python3 benchmarks/gluon_fp8_moe_ws.py --gpu`` checks it against the wide kernel (run 49:
bit-identical).
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
if moe.HAS_GLUON:
    from benchmarks import gluon_fp8_moe_ws as ws
    ((report, regs, local),) = ws.offline_reports_ws((4,))
    out["report"] = dataclasses.asdict(report)
    out["regs"] = {str(k): v for k, v in regs.items()}
    out["local"] = local
    kernels = {"ws": ws.compile_gluon_ws(4), "wide": moe.compile_gluon_moe(moe.Variant(64, 8, 4)),
               "ws_sorted": ws.compile_gluon_ws(4, sorted_x=True)}
    from benchmarks.sass_loop import main_loop
    sorted_loop = main_loop(kernels["ws_sorted"].asm["cubin"], 8)
    out["sorted_loop"] = [sorted_loop.instructions, sorted_loop.opcodes["BAR"]]
    out["sorted_regs"], out["sorted_local"] = ws.partition_registers(kernels["ws_sorted"].asm["cubin"])
    out["sorted_regs"] = {str(k): v for k, v in out["sorted_regs"].items()}
    ints = lambda pattern, ptx: sorted({int(n) for n in re.findall(pattern, ptx)})
    for name, kernel in kernels.items():
        ptx = kernel.asm["ptx"]
        shapes = re.findall(r"wgmma\\.mma_async\\.sync\\.aligned\\.(m\\d+n\\d+k\\d+)", ptx)
        out[name] = {
            "shapes": sorted(set(shapes)),
            "fma": len(re.findall(r"fma\\.rn\\.f32", ptx)),
            "setmaxnreg": ints(r"setmaxnreg\\.\\w+\\.sync\\.aligned\\.u32\\s+(\\d+)", ptx),
            "init_counts": ints(r"mbarrier\\.init\\.shared::cta\\.b64 \\[[^]]*\\], (\\d+)", ptx),
            "noinc_arrives": len(re.findall(r"cp\\.async\\.mbarrier\\.arrive\\.noinc", ptx)),
            "copy_waits": len(re.findall(r"cp\\.async\\.wait_group", ptx)),
        }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return gluon_child(CHILD)


def test_ws_compiles_without_spills_or_serialized_wgmmas(compiled: dict[str, Any]) -> None:
    report = compiled["report"]
    assert report["ok"], report["error"]
    assert 0 < report["registers"] <= 255 and report["spill_stores"] == report["spill_loads"] == 0, report
    assert not [w for w in report["ptxas_warnings"] if "serialized" in w], report["ptxas_warnings"]
    assert compiled["local"] == 0, "local-memory loads/stores in the SASS"
    in_loop = [pendings for pendings, inside in report["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, report["ttgir_waits"]


def test_ws_partitions_get_their_registers(compiled: dict[str, Any]) -> None:
    """Math warps raised to 240, loaders lowered to 24, and each partition's SASS fits its count."""
    assert compiled["ws"]["setmaxnreg"] == [24, 240]
    regs = compiled["regs"]
    assert 0 < regs["240"] <= 240 and 0 < regs["24"] <= 24, regs


def test_ws_issues_the_wide_kernels_wgmmas_and_promotion(compiled: dict[str, Any]) -> None:
    """Same wgmma shape, and the promotion as whole 64-FMA blocks (one per thread's 64 accumulator
    values): 2 in the loop, 2 or 3 in the tails. LLVM lays the tails out differently in the two
    kernels (the wide loop also requests the next pass's blocks there), so the counts may differ.
    The epilogue adds 64 more: ``kernels.gluon_gate_up._e4m3_quotient``'s 2 FMAs for each of a
    thread's 32 h values (64 x 128 on 256 threads)."""
    assert compiled["ws"]["shapes"] == compiled["wide"]["shapes"] == ["m64n128k32"]
    for name in ("ws", "wide"):
        fma = compiled[name]["fma"] - 2 * 32
        assert fma % 64 == 0 and 4 * 64 <= fma <= 5 * 64, (name, fma)


def test_ws_barrier_plumbing(compiled: dict[str, Any]) -> None:
    """ready: 1 expect + 128 loader-thread noinc arrivals; empty: 256 math-thread arrivals. The only
    cp.async wait left is the loader's final drain (the wide kernel waits every K block)."""
    ws = compiled["ws"]
    assert ws["init_counts"] == [129, 256], ws["init_counts"]
    assert ws["noinc_arrives"] >= 2, ws
    assert ws["copy_waits"] == 1 and compiled["wide"]["copy_waits"] > 1, (ws, compiled["wide"])


def test_ws_sorted_loads_x_by_tma_and_keeps_the_math_loop_lean(compiled: dict[str, Any]) -> None:
    """``SORTED``: the ready barriers count the expect alone, no cp.async anywhere, the partitions at
    240 / 24 registers without local memory, and at most 2 CTA barriers per two K blocks in the math
    loop (the kernels' wide schedule with sorted x has 8)."""
    ws_sorted = compiled["ws_sorted"]
    assert ws_sorted["init_counts"] == [1, 256], ws_sorted["init_counts"]
    assert ws_sorted["noinc_arrives"] >= 2 and ws_sorted["copy_waits"] == 0, ws_sorted
    assert ws_sorted["setmaxnreg"] == [24, 240] and ws_sorted["shapes"] == ["m64n128k32"], ws_sorted
    regs = compiled["sorted_regs"]
    assert 0 < regs["240"] <= 240 and 0 < regs["24"] <= 24 and compiled["sorted_local"] == 0, regs
    instructions, barriers = compiled["sorted_loop"]
    assert instructions > 0 and barriers <= 2, compiled["sorted_loop"]
