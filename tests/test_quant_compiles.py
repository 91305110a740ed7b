"""The fp8 activation-quantization kernels of ``kernels/quant.py`` (the per-token one, the token-major
sorted one) and the row gather of ``kernels/row_gather.py`` (the two-pass path's second pass, with
scales, and the 16-bit sorted x, without) compile for sm_90a on a CPU.

The CPU suites run them under the Triton interpreter, which accepts code that the compiler rejects
(a name bound to tensors of different shapes in the two branches of an ``if``, for one). So the
kernels are compiled here for an H100 target, in a child Python without ``TRITON_INTERPRET``
(``benchmarks.offline_child``). Compile only; nothing runs.
"""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from benchmarks.offline_child import run_offline

CHILD = """
import json
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels.quant import _quant_groups_kernel, _quant_groups_sorted_kernel
from kernels.row_gather import _gather_rows_kernel
target = GPUTarget("cuda", 90, 32)
def build(fn, constexprs, types):
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in fn.arg_names}
    kernel = triton.compile(ASTSource(fn, signature, constexprs), target=target, options={"num_warps": 4})
    return kernel.metadata.name
ptrs = {"x_ptr": "*bf16", "q_ptr": "*fp8e4nv", "s_ptr": "*fp32", "slot_rows_ptr": "*i32",
        "sorted_ids_ptr": "*i32", "num_padded_ptr": "*i32"}
out = {
    "plain": build(_quant_groups_kernel, {"BLOCK_T": 16, "GROUP_": 128, "PDL": True}, ptrs),
    "sorted": build(_quant_groups_sorted_kernel,
                    {"TOP_K": 8, "BLOCK_T": 16, "PAD_ROWS": 64, "GROUP_": 128, "PDL": True}, ptrs),
}
bytes_ptrs = {"x_ptr": "*u8", "s_ptr": "*fp32", "out_ptr": "*u8", "out_s_ptr": "*fp32",
              "sorted_ids_ptr": "*i32", "num_padded_ptr": "*i32"}
for name, scales in (("gather", True), ("gather-16-bit", False)):
    out[name] = build(_gather_rows_kernel, {"TOP_K": 8, "BLOCK_R": 16, "BLOCK_B": 512, "BLOCK_G": 64,
                                            "HAS_SCALES": scales, "PDL": True}, bytes_ptrs)
print(json.dumps(out))
"""


def test_the_quantization_kernels_compile_for_sm90() -> None:
    """Both of ``kernels/quant.py`` and the row gather with and without scales."""
    names = run_offline(CHILD)
    assert names == {"plain": "_quant_groups_kernel", "sorted": "_quant_groups_sorted_kernel",
                     "gather": "_gather_rows_kernel", "gather-16-bit": "_gather_rows_kernel"}  # fmt: skip
