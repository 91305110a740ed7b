"""The fp8 gate/up probe's variants and the dual gate/up compile for sm_90a on a CPU, as they claim.

``benchmarks/fp8_gate_up_probe.py`` loads ``kernels/gluon_gate_up_ws.py`` once per variant with one
helper swapped; each copy must compile its own kernel (not the committed one from a shared cache):
``x-once`` issues one TMA load fewer per K block, ``no-promotion`` half the wgmmas (one accumulator
chain, no temporaries), ``no-epilogue`` keeps every wgmma (its accumulators stay live), and so does
``dual-no-epilogue``, the probe's copy of the dual kernel.
``kernels/gluon_gate_up_dual.py`` (x read once per tile, a partition per math warpgroup; compiled by
``benchmarks/gluon_gate_up_dual.py``): no spills at its 232 registers, no wgmma serialization, one
wgmma waited for before each promotion, and one barrier per K block, of its own 128 threads.

Compile only; their times and the dual's bits are measured on the GPU (BENCHMARKS.md, runs 106 and
111-112). The compiles run in a child Python without ``TRITON_INTERPRET``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("triton")

CHILD = r"""
import hashlib, json
from kernels.gluon_support import HAS_GLUON
out = {"has_gluon": HAS_GLUON}
if HAS_GLUON:
    import benchmarks.gluon_gate_up_ws as committed
    from benchmarks.fp8_gate_up_probe import variant_modules
    from benchmarks.gluon_gate_up_dual import offline
    variants = {}
    for name, module in variant_modules().items():
        committed._gluon_gate_up_ws_kernel = module._gluon_gate_up_ws_kernel
        kernel = committed.compile_ws(5)
        ptx = kernel.asm["ptx"]
        variants[name] = {"cubin": hashlib.sha1(kernel.asm["cubin"]).hexdigest(),
                          "wgmma": ptx.count("wgmma.mma_async"), "tma": ptx.count("cp.async.bulk.tensor"),
                          "div_rn": ptx.count("div.rn.f32"), "ex2": ptx.count("ex2.approx"),
                          "tanh": ptx.count("tanh.approx.f32")}
    out["variants"] = variants
    out["dual"] = offline([4])
    import re
    from benchmarks.gluon_gate_up_dual import compile_offline
    from benchmarks.sass_loop import disassemble, main_loop, opcode
    cubin = compile_offline(4).asm["cubin"]
    loop = main_loop(cubin, 8)
    lines = re.findall(r"/\*([0-9a-f]+)\*/\s+([^;]*);", disassemble(cubin))
    out["dual_loop_bars"] = [text.strip() for address, text in lines
                             if loop.start <= int(address, 16) <= loop.end and opcode(text) == "BAR"]
    import benchmarks.gluon_gate_up_dual as dual_bench
    from benchmarks.fp8_gate_up_probe import dual_no_epilogue_module
    duals = {"dual": compile_offline(4)}
    dual_bench._gluon_gate_up_dual_kernel = dual_no_epilogue_module()._gluon_gate_up_dual_kernel
    duals["dual-no-epilogue"] = dual_bench.compile_offline(4)
    out["duals"] = {name: {"cubin": hashlib.sha1(k.asm["cubin"]).hexdigest(),
                           "wgmma": k.asm["ptx"].count("wgmma.mma_async"),
                           "tma": k.asm["ptx"].count("cp.async.bulk.tensor")} for name, k in duals.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return gluon_child(CHILD)


def test_each_probe_variant_compiles_its_own_kernel(compiled: dict[str, Any]) -> None:
    variants = compiled["variants"]
    assert set(variants) == {"committed", "x-once", "no-scale-loads", "no-promotion", "no-epilogue",
                             "tanh-silu"}
    assert len({v["cubin"] for v in variants.values()}) == 6, variants
    base = variants["committed"]
    assert variants["x-once"]["tma"] == base["tma"] - 1 and variants["x-once"]["wgmma"] == base["wgmma"]
    assert variants["no-promotion"]["wgmma"] == base["wgmma"] // 2
    assert variants["no-scale-loads"]["wgmma"] == base["wgmma"]
    # the epilogue's two TMA stores of codes are there, but only behind a never-taken branch
    assert variants["no-epilogue"]["wgmma"] == base["wgmma"] and variants["no-epilogue"]["tma"] == base["tma"]


def test_the_epilogue_divides_once_per_row(compiled: dict[str, Any]) -> None:
    """``kernels.gluon_gate_up._e4m3_quotient``: a thread's 64 h values are divided through their 2
    rows' reciprocals (4 IEEE divisions: each row's scale and its reciprocal), not one by one; the
    tanh variant trades each exp for a tanh and keeps those divisions."""
    variants = compiled["variants"]
    base, tanh = variants["committed"], variants["tanh-silu"]
    assert base["div_rn"] == 4 and base["tanh"] == 0 and base["ex2"] == 64, base
    assert tanh["div_rn"] == 4 and tanh["ex2"] == 0 and tanh["tanh"] == 64, tanh
    assert tanh["wgmma"] == base["wgmma"], tanh


def test_the_dual_probe_keeps_every_wgmma_in_its_own_kernel(compiled: dict[str, Any]) -> None:
    """``dual-no-epilogue``: its own kernel, every wgmma and TMA copy still there (the epilogue's two
    code stores only behind a never-taken branch)."""
    dual, probe = compiled["duals"]["dual"], compiled["duals"]["dual-no-epilogue"]
    assert dual["cubin"] != probe["cubin"]
    assert probe["wgmma"] == dual["wgmma"] and probe["tma"] == dual["tma"], (dual, probe)


def test_the_dual_gate_up_compiles_lean(compiled: dict[str, Any]) -> None:
    report = compiled["dual"][0]
    assert report["ok"], report["error"]
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report
    assert not [w for w in report["ptxas_warnings"] if "C75" in w or "serialized" in w], report
    assert set(report["ptx_waits"]) == {0}, report["ptx_waits"]  # each half's wgmma waited for at once
    assert report["loop_barriers"] == 1, report["loop_barriers"]


def test_the_dual_gate_ups_loop_barrier_is_its_partitions_own(compiled: dict[str, Any]) -> None:
    """A named barrier of 128 threads (0x80), not the CTA's: the partitions do not wait for each other."""
    bars = compiled["dual_loop_bars"]
    assert len(bars) == 1 and bars[0].endswith(", 0x80"), bars
