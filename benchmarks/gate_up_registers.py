"""Registers and spills of the gate/up kernel per tile, compiled for sm_90a without a GPU.

    PYTHONPATH=. python3 benchmarks/gate_up_registers.py

Compiles ``kernels.fused_moe._gate_up_kernel`` through Triton for an H100 target (``GPUTarget("cuda",
90, 32)``) with the launch's specializations (pointers and sizes 16-divisible, unit strides
constant, no TMA), then runs Triton's bundled ``ptxas -v`` on the PTX and prints registers per thread
and spill bytes for bf16 and for fp8 block-scale at several block_m / block_n / warps. This explains
the fp8 layer's large-T gap (issue 3) without device time: the block-scaled fp8 dot is promoted
through a temporary fp32 tile, so the two accumulators and that temporary need three live
``block_m x block_n`` fp32 tiles where bf16 accumulates in place in two.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels.fused_moe import _gate_up_kernel

UNIT_STRIDES = {"stride_xk", "stride_wk", "stride_hn"}
UNSPECIALIZED = {"num_slots", "max_blocks", "top_k"}  # do_not_specialize or not 16-divisible


def pointer_types(fp8: bool) -> dict[str, str]:
    data = "*fp8e4nv" if fp8 else "*bf16"
    return {
        "x_ptr": data, "w1_ptr": data, "h_ptr": data, "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32",
        "num_padded_ptr": "*i32", "xs_ptr": "*fp32", "w1s_ptr": "*fp32", "hs_ptr": "*fp32",
    }  # fmt: skip


def ptxas_usage(ptx: str) -> tuple[int, int]:
    """``(registers per thread, spill store bytes)`` that ``ptxas -v`` reports for ``ptx``."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as handle:
        handle.write(ptx)
    try:
        done = subprocess.run(
            [ptxas, "-v", "--gpu-name=sm_90a", handle.name, "-o", os.devnull],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        os.unlink(handle.name)
    text = done.stdout + done.stderr
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    if registers is None or spills is None:
        raise RuntimeError(f"unexpected ptxas output: {text[-300:]}")
    return int(registers.group(1)), int(spills.group(1))


def gate_up_usage(fp8: bool, block_m: int, block_n: int, block_k: int, warps: int) -> tuple[int, int]:
    names = _gate_up_kernel.arg_names
    pointers = pointer_types(fp8)
    constants = {
        "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8, "EVEN_K": True,
        "DOT_PRECISION": "tf32", "USE_TMA": False, "BLOCK_SCALE": fp8, **dict.fromkeys(UNIT_STRIDES, 1),
    }  # fmt: skip
    signature = {n: "constexpr" if n in constants else pointers.get(n, "i32") for n in names}
    attrs = {
        (names.index(n),): [["tt.divisibility", 16]]
        for n in names
        if n not in constants and n not in UNSPECIALIZED
    }
    source = ASTSource(_gate_up_kernel, signature, constants, attrs)
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": 3}
    )
    return ptxas_usage(compiled.asm["ptx"])


def main() -> None:
    print("| dtype | block_m | block_n (gate, up each) | block_k | warps | registers | spill stores (B) |")
    print("|---|---|---|---|---|---|---|")
    configs = [
        (False, 128, 128, 64, 8),  # the bf16 layer's best large-T gate/up tile
        (True, 64, 128, 128, 8),  # the fp8 layer's best large-T tile
        (True, 128, 128, 128, 8),
        (True, 128, 128, 128, 16),
        (True, 128, 64, 128, 8),
        (True, 128, 64, 128, 16),
    ]
    for fp8, block_m, block_n, block_k, warps in configs:
        registers, spills = gate_up_usage(fp8, block_m, block_n, block_k, warps)
        dtype = "fp8 block-scale" if fp8 else "bf16"
        print(
            f"| {dtype} | {block_m} | {block_n} | {block_k} | {warps} | {registers} | {spills} |", flush=True
        )


if __name__ == "__main__":
    main()
