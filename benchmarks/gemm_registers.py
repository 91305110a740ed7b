"""Registers and spills of the two GEMM kernels per tile, compiled for sm_90a without a GPU.

    PYTHONPATH=. python3 benchmarks/gemm_registers.py

Compiles ``kernels.fused_moe._gate_up_kernel`` and ``_down_kernel`` through Triton for an H100
target (``GPUTarget("cuda", 90, 32)``) with the launch's specializations (pointers and sizes
16-divisible, unit strides constant, no TMA), runs Triton's bundled ``ptxas -v`` on the PTX and
prints registers per thread and spill bytes for bf16 and for fp8 block-scale tiles. It explains the
fp8 layer's large-T gap (issue 3) without device time: a block-scaled fp8 dot is promoted through a
temporary fp32 tile before it is scaled and added, so fp8 needs one more live ``block_m x block_n``
fp32 tile than bf16, which accumulates in place.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Any

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels.fused_moe import _down_kernel, _gate_up_kernel
from kernels.tactics import GemmTile

KERNELS: dict[str, Any] = {"gate_up": _gate_up_kernel, "down": _down_kernel}
UNIT_STRIDES = {"stride_xk", "stride_hk", "stride_wk", "stride_hn", "stride_yn"}
UNSPECIALIZED = {"num_slots", "max_blocks", "top_k"}  # do_not_specialize, or not 16-divisible
FP32_POINTERS = {"xs_ptr", "w1s_ptr", "hs_ptr", "w2s_ptr", "topk_weights_ptr"}
INT_POINTERS = {"sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr"}


def pointer_type(name: str, gemm: str, fp8: bool) -> str:
    """Triton signature type of a pointer argument: operands fp8 or bf16, the outputs bf16 (the
    committed fp8 gate/up, which quantizes h in its epilogue and so has ``hs_ptr``, writes fp8 h)."""
    if name in FP32_POINTERS:
        return "*fp32"
    if name in INT_POINTERS:
        return "*i32"
    fp8_h = gemm == "gate_up" and name == "h_ptr" and "hs_ptr" in KERNELS[gemm].arg_names
    is_output = (gemm, name) in {("gate_up", "h_ptr"), ("down", "y_ptr")} and not fp8_h
    return "*fp8e4nv" if fp8 and not is_output else "*bf16"


def ptxas_verbose(ptx: str) -> str:
    """stdout + stderr of Triton's bundled ``ptxas -v --gpu-name=sm_90a`` on ``ptx``."""
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
    return done.stdout + done.stderr


def ptxas_usage(ptx: str) -> tuple[int, int]:
    """``(registers per thread, spill store bytes)`` that ``ptxas -v`` reports for ``ptx``."""
    text = ptxas_verbose(ptx)
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    if registers is None or spills is None:
        raise RuntimeError(f"unexpected ptxas output: {text[-300:]}")
    return int(registers.group(1)), int(spills.group(1))


def compile_gemm(gemm: str, fp8: bool, block_m: int, tile: GemmTile, even_k: bool = True) -> Any:
    """One GEMM kernel compiled for sm_90a as a launch of ``tile`` would compile it (pointers and
    sizes 16-divisible, unit strides constant, TMA descriptors where ``tile.tma``, x's too where
    ``tile.sorted_x``); Triton's disk cache answers a repeat."""
    kernel = KERNELS[gemm]
    names = kernel.arg_names
    constants = {
        "BLOCK_M": block_m, "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k, "GROUP_M": tile.group_m,
        "EVEN_K": even_k, "DOT_PRECISION": "tf32", "USE_TMA": tile.tma, "BLOCK_SCALE": fp8, "PDL": False,
        **({"SORTED_X": tile.sorted_x} if "SORTED_X" in names else {}),
        **{n: 1 for n in UNIT_STRIDES if n in names},
    }  # fmt: skip
    descriptors = {
        ("gate_up", "x_ptr"): (block_m, tile.block_k) if tile.sorted_x else None,
        ("gate_up", "w1_ptr"): (tile.block_n, tile.block_k),
        ("down", "w2_ptr"): (tile.block_n, tile.block_k),
        ("down", "h_ptr"): (block_m, tile.block_k),
    }
    signature = {}
    for n in names:
        if n in constants:
            signature[n] = "constexpr"
        elif tile.tma and descriptors.get((gemm, n)) is not None:
            rows, cols = descriptors[gemm, n]
            signature[n] = f"tensordesc<{'fp8e4nv' if fp8 else 'bf16'}[{rows},{cols}]>"
        else:
            signature[n] = pointer_type(n, gemm, fp8) if n.endswith("_ptr") else "i32"
    attrs = {
        (names.index(n),): [["tt.divisibility", 16]]
        for n in names
        if n not in constants and n not in UNSPECIALIZED and not signature[n].startswith("tensordesc")
    }
    options = {"num_warps": tile.num_warps, "num_stages": tile.num_stages}
    return triton.compile(ASTSource(kernel, signature, constants, attrs), GPUTarget("cuda", 90, 32), options)


CONFIGS = [  # (gemm, fp8, block_m, block_n, block_k, warps)
    ("gate_up", False, 128, 128, 64, 8),  # the bf16 layer's best large-T tiles
    ("down", False, 128, 256, 64, 8),
    ("gate_up", True, 64, 128, 128, 8),  # the fp8 layer's best large-T tiles (runs A and C)
    ("down", True, 64, 128, 128, 4),
    ("gate_up", True, 128, 128, 128, 8),
    ("gate_up", True, 128, 128, 128, 16),
    ("gate_up", True, 128, 64, 128, 8),
    ("down", True, 128, 128, 128, 8),
    ("down", True, 128, 256, 128, 8),
]


def main() -> None:
    print("| GEMM | dtype | block_m | block_n | block_k | warps | registers | spill stores (B) |")
    print("|---|---|---|---|---|---|---|---|")
    for gemm, fp8, block_m, block_n, block_k, warps in CONFIGS:
        tile = GemmTile(block_n, block_k, 8, warps, 3)
        registers, spills = ptxas_usage(compile_gemm(gemm, fp8, block_m, tile).asm["ptx"])
        dtype = "fp8 block-scale" if fp8 else "bf16"
        print(f"| {gemm} | {dtype} | {block_m} | {block_n} | {block_k} | {warps} | {registers} | {spills} |")


if __name__ == "__main__":
    main()
