"""The Triton gate/up with ``sorted_x`` compiles for sm_90a on a CPU and reads x by TMA.

The bf16 layer's large-T gate/up tile (block_m 128, ``n128k64g8w8s4t``) is compiled both ways, in a
child Python without ``TRITON_INTERPRET`` (``benchmarks/offline_child.py``, through
``benchmarks/gemm_registers.compile_gemm``): gathering x's rows, the K loop issues per-thread
``cp.async`` copies; with ``sorted_x`` it issues none (x and both weight tiles come as TMA boxes), and
neither spills. Compile only; whether it is faster is a GPU measurement (BENCHMARKS.md).
"""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from benchmarks.offline_child import run_offline

CHILD = """
import json, re
from benchmarks.gemm_registers import compile_gemm, ptxas_usage
from kernels.tactics import GemmTile
out = {}
for sorted_x in (False, True):
    tile = GemmTile(128, 64, 8, 8, 4, tma=True, sorted_x=sorted_x)
    ptx = compile_gemm("gate_up", False, 128, tile).asm["ptx"]
    registers, spills = ptxas_usage(ptx)
    out["sorted" if sorted_x else "gathered"] = {
        "cp_async": len(re.findall(r"cp\\.async\\.cg\\.shared\\.global", ptx)),
        "tma_loads": len(re.findall(r"cp\\.async\\.bulk\\.tensor\\.2d", ptx)),
        "registers": registers, "spills": spills,
    }
print(json.dumps(out))
"""


def test_sorted_x_gate_up_compiles_and_loads_x_by_tma() -> None:
    out = run_offline(CHILD)
    gathered, sorted_ = out["gathered"], out["sorted"]
    assert gathered["cp_async"] > 0, gathered  # x's rows gathered by per-thread async copies
    assert sorted_["cp_async"] == 0, sorted_
    assert sorted_["tma_loads"] > gathered["tma_loads"] > 0, out  # x's box joins the weights'
    assert gathered["spills"] == sorted_["spills"] == 0, out
