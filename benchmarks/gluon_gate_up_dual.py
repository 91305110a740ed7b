"""The dual fp8 gate/up (``kernels/gluon_gate_up_dual.py``: x read once per tile, each math warpgroup
its own partition) compiled for sm_90a on a CPU: registers, spills, wgmma waits, barriers.

    env -u TRITON_INTERPRET PYTHONPATH=. python3 benchmarks/gluon_gate_up_dual.py   # offline compile

Its bits and time against the two-pass persistent kernel are measured on the GPU by
``benchmarks/fp8_gate_up_probe.py`` (variant ``dual``; BENCHMARKS.md, runs 111-112), its place in the
layer by ``benchmarks/default_ab.py``.
"""

from __future__ import annotations

from typing import Any

from triton.experimental.gluon import language as gl

from kernels.gluon_common import SCALE_GROUP
from kernels.gluon_down import LOADER_REGS, LOADER_WARPS
from kernels.gluon_gate_up_dual import MATH_REGS, PARTITION_ROWS, _gluon_gate_up_dual_kernel
from kernels.gluon_gate_up_ws import HALF


def compile_offline(num_stages: int = 4) -> Any:
    """The kernel compiled for sm_90a without a GPU (deepseek-like specialization)."""
    import triton
    from triton.experimental.gluon._runtime import GluonASTSource

    from benchmarks.gluon_fp8_gemm import TARGET

    fn = _gluon_gate_up_dual_kernel
    x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    w_layout = gl.NVMMASharedLayout.get_default_for([2, HALF.value, SCALE_GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([PARTITION_ROWS.value, HALF.value], gl.float8e4nv)
    signature = {
        "x_desc": f"tensordesc<fp8e4nv[128,{SCALE_GROUP}],{x_layout!r}>",
        "w_desc": f"tensordesc<fp8e4nv[2,{HALF.value},{SCALE_GROUP}],{w_layout!r}>",
        "h_desc": f"tensordesc<fp8e4nv[{PARTITION_ROWS.value},{HALF.value}],{h_layout!r}>",
        "xs_ptr": "*fp32", "ws_ptr": "*fp32", "hs_ptr": "*fp32", "expert_ids_ptr": "*i32",
        "num_padded_ptr": "*i32", "N": "i32", "K": "i32", "stride_xsm": "i32", "stride_wse": "i32",
        "stride_wsn": "i32", "stride_wsk": "i32", "stride_hsm": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr", "LOADER_WARPS": "constexpr",
        "LOADER_REGS": "constexpr", "MATH_REGS": "constexpr",
    }  # fmt: skip
    constexprs = {"NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": LOADER_REGS, "MATH_REGS": MATH_REGS}  # fmt: skip
    aligned = ("xs_ptr", "ws_ptr", "hs_ptr", "expert_ids_ptr", "num_padded_ptr", "N", "K")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": 4, "num_stages": num_stages})


def offline(stages: list[int]) -> list[dict[str, Any]]:
    """One compile report per ring depth (``benchmarks.gluon_fp8_gemm._report``: registers, spills,
    wgmma waits, ptxas warnings, shared memory, CTA barriers in the K loop's SASS: 8 k32 wgmmas per
    K block, two halves of four)."""
    import dataclasses

    from benchmarks.gluon_fp8_gemm import _report

    return [dataclasses.asdict(_report("gluon-gate-up-dual", (128, 128, 8, s),
                                       lambda s=s: compile_offline(s), mma_per_iteration=8))
            for s in stages]  # fmt: skip


if __name__ == "__main__":
    import json

    for report in offline([4]):
        print(json.dumps(report))
