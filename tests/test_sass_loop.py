"""``benchmarks/sass_loop.py`` finds a kernel's main loop in nvdisasm output and counts its opcodes
(CPU only: a synthetic listing, and the committed Gluon gate/up compiled for sm_90a)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.sass_loop import loops, opcode

LISTING = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   QGMMA.64x128x32.F32.E4M3.E4M3 R24, gdesc[UR4], R24, gsb0 ;
.L_x_1:
        /*0020*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [UR8], R2 ;
        /*0030*/              @!P0 BRA `(.L_x_1) ;
        /*0040*/                   FFMA R5, R6, R7, R5 ;
        /*0050*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0060*/                   QGMMA.64x128x32.F32.E4M3.E4M3 R24, gdesc[UR4], R24, gsb0 ;
        /*0070*/               @P1 BRA `(.L_x_0) ;
        /*0080*/                   EXIT ;
"""


def test_every_backward_branch_region_is_a_loop_with_its_opcodes() -> None:
    found = {(loop.start, loop.end): loop for loop in loops(LISTING)}
    assert set(found) == {(0x20, 0x30), (0x10, 0x70)}  # the try-wait spin and the K loop
    k_loop = found[(0x10, 0x70)]
    assert k_loop.instructions == 7
    assert k_loop.opcodes["QGMMA"] == 2 and k_loop.opcodes["BAR"] == 1 and k_loop.opcodes["BRA"] == 2
    assert opcode("@!P0 BRA `(.L_x_1)") == "BRA" and opcode("  FFMA R5, R6, R7, R5") == "FFMA"


CHILD = """
import json
from benchmarks import gluon_fp8_moe as moe
from benchmarks.sass_loop import main_loop
out = {"has_gluon": moe.HAS_GLUON}
if moe.HAS_GLUON:
    loop = main_loop(moe.compile_gluon_moe(moe.Variant(64, 8, 4)).asm["cubin"], 8)
    out.update(instructions=loop.instructions, opcodes=dict(loop.opcodes))
print(json.dumps(out))
"""


def test_the_wide_gate_up_loop_holds_two_k_blocks_of_wgmma_and_promotion(
    gluon_child: Callable[[str], dict[str, Any]],
) -> None:
    """Two K blocks per iteration (the loop is unrolled by two): 8 m64n128k32 wgmmas and the
    promotion's 2 x 64 FMAs per warp; everything else is overhead (BENCHMARKS.md, run 55)."""
    result = gluon_child(CHILD)
    assert result["opcodes"]["QGMMA"] == 8 and result["opcodes"]["FFMA"] == 128, result["opcodes"]
    assert 128 + 8 < result["instructions"] < 1000, result["instructions"]
