"""Block-scaled fp8 GEMM for Hopper in Triton Gluon that keeps one wgmma in flight while it promotes the
previous K block, beside the straightforward Triton kernel of the same math.

    PYTHONPATH=. python benchmarks/gluon_fp8_gemm.py --offline   # CPU only: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_fp8_gemm.py --gpu       # H100: check and time

The math (DeepSeek fp8 recipe, one expert, no gather), accumulated in fp32, output bf16::

    A: (M, K) float8_e4m3fn, row-major             a_scale: (M, K/128) float32, per row per 128-wide K group
    B: (N, K) float8_e4m3fn, K contiguous (w[n, k]) b_scale: (N/128, K/128) float32, per 128x128 block
    C[m, n] = sum_kb (A[m, kb] . B[n, kb]) * a_scale[m, kb] * b_scale[n // 128, kb]      C: (M, N) bfloat16

BLOCK_K is 128 (one scale group per K step), BLOCK_N divides 128 (one ``b_scale`` value per K step and
tile), BLOCK_M is 64 or 128.

Why: the plain Triton kernel (``acc += tl.dot(a, b) * scale``) has to scale every K block's dot result
before it is added, so Triton's pipeliner waits for each fp8 wgmma at once (``warp_group_dot_wait
{pendings = 0}`` right after the dot): tensor cores idle while the promotion FMAs run. The Gluon kernel
issues block k's wgmma asynchronously into a temporary, waits with ``num_outstanding=1`` (so block k-1's
wgmma is complete while block k's runs), then promotes block k-1's temporary into the fp32 accumulator
with its scales. Two temporaries ping-pong: block k's wgmma writes into the registers of block k-2's
temporary, which was promoted one step earlier. Loads come from a NUM_STAGES TMA ring with one
mbarrier per slot, filled in the prologue; the slot of block k-1 is refilled (with block
k+NUM_STAGES-1) right after the wait that retires block k-1's wgmma.

Two things the compiler needs, both found by reading ptxas -v (``(C75xx) ... wgmma.mma_async
instructions are serialized``) and the PTX:
  * The K loop is unrolled by two (even blocks in temporary T0, odd in T1). A one-block loop swaps the
    two temporaries at the back-edge; the phi copies write registers of an in-flight wgmma and ptxas
    serializes all wgmmas (C7515).
  * After each promotion the accumulator goes through a no-op ``warpgroup_mma_wait(1, deps=(acc,))``
    (``_gluon_pin``). Otherwise LLVM sinks the promotion of block k-1 below the issue of block k+1 into
    the same registers, copies the temporary, and ptxas serializes again (C7514).
With both, ptxas reports no C75xx message for the non-spilling tiles, and the loop's PTX is: issue
wgmma (4 x m64nNk32), ``wgmma.wait_group 1``, TMA refill, 64-128 FFMAs, ``wgmma.wait_group 1`` (pin).

Register cost: three live ``BLOCK_M x BLOCK_N`` fp32 tiles (accumulator, in-flight temporary, temporary
being promoted) against one (plus the dot result) in the plain kernel. Per thread that is
``3 * BLOCK_M * BLOCK_N / (32 * num_warps)`` registers: 192 for 128x128 on 8 warps or 64x128 on 4 warps,
384 (spills, and ptxas serializes the wgmmas, C7512) for 128x128 on 4 warps, so the wrappers default
to 8 warps.

STATUS: run on an H100 (BENCHMARKS.md, device run 36): correct (rel err 1.7e-3, bound 4e-3) and 852-950
TFLOP/s at 128x128 / 8 warps, 87-88% of ``torch._scaled_mm``'s dense fp8 rate, where the plain Triton
kernel reached 61-71%. The main loop lives in ``kernels/gluon_common.py``, shared with the MoE kernels.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from benchmarks.gemm_registers import ptxas_verbose
from benchmarks.sass_loop import main_loop
from pytest_moetune.tuner import corrupts_cuda_context

try:  # Gluon ships with triton >= 3.4 as an experimental module
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, tma
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from kernels.gluon_common import _gluon_mainloop, _mma_layout

    HAS_GLUON = True
except ImportError:  # pragma: no cover - depends on the Triton build
    HAS_GLUON = False

SCALE_GROUP = 128  # K (and N for b_scale) width of one scale group; also BLOCK_K
TARGET = GPUTarget("cuda", 90, 32)


# --------------------------------------------------------------------------------------------------
# Gluon kernel: async wgmma with one in flight, promotion of the previous K block
# --------------------------------------------------------------------------------------------------
if HAS_GLUON:

    @gluon.jit
    def _gluon_fp8_gemm_kernel(
        a_desc, b_desc, c_desc,  # TMA descriptors: A (M, K) fp8, B (N, K) fp8, C (M, N) bf16
        a_scale_ptr, b_scale_ptr,  # fp32 (M, K/128), fp32 (N/128, K/128)
        M, N, K,
        stride_sa_m, stride_sa_k, stride_sb_n, stride_sb_k,
        NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
    ):  # fmt: skip
        """One (BLOCK_M, BLOCK_N) tile of C per program; grid ``cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N)``
        in grouped order (GROUP_M rows of tiles share B blocks in L2)."""
        BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
        BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
        BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
        gl.static_assert(BLOCK_K == 128, "one scale group per K step")
        gl.static_assert(128 % BLOCK_N == 0, "BLOCK_N must divide the 128-wide b_scale block")
        gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")

        pid = gl.program_id(0)
        grid_m = gl.cdiv(M, BLOCK_M)
        grid_n = gl.cdiv(N, BLOCK_N)
        group_size = GROUP_M * grid_n
        first_m = (pid // group_size) * GROUP_M
        rows_in_group = gl.minimum(grid_m - first_m, GROUP_M)
        pid_m = first_m + (pid % group_size) % rows_in_group
        pid_n = (pid % group_size) // rows_in_group
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        num_k = gl.cdiv(K, BLOCK_K)

        mma_layout: gl.constexpr = _mma_layout(BLOCK_M, BLOCK_N, gl.num_warps())
        row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)

        rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
        sa_ptrs = a_scale_ptr + rows * stride_sa_m
        row_ok = rows < M
        sb_ptr = b_scale_ptr + (off_n // 128) * stride_sb_n

        acc = _gluon_mainloop(a_desc, b_desc, off_m, off_n, num_k, sa_ptrs, row_ok, sb_ptr, stride_sa_k,
                              stride_sb_k, stride_sb_n, mma_layout, NUM_STAGES)  # fmt: skip

        c_smem = gl.allocate_shared_memory(c_desc.dtype, [BLOCK_M, BLOCK_N], c_desc.layout)
        c_smem.store(acc.to(c_desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(c_desc, [off_m, off_n], c_smem)
        tma.store_wait(pendings=0)


# --------------------------------------------------------------------------------------------------
# Plain Triton kernel: the straightforward form, the baseline
# --------------------------------------------------------------------------------------------------
@triton.jit
def _triton_fp8_gemm_kernel(
    a_ptr, b_ptr, c_ptr,  # A (M, K) fp8, B (N, K) fp8, C (M, N) bf16; K and N contiguous
    a_scale_ptr, b_scale_ptr,  # fp32 (M, K/128), fp32 (N/128, K/128)
    M, N, K,
    stride_am, stride_bn, stride_cm,
    stride_sa_m, stride_sa_k, stride_sb_n, stride_sb_k,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """``acc += tl.dot(a, b) * (sa[:, None] * sb)`` per 128-wide K block; same tiling and grid order
    as the Gluon kernel."""
    tl.static_assert(BLOCK_K == 128)
    pid = tl.program_id(0)
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    group_size = GROUP_M * grid_n
    first_m = (pid // group_size) * GROUP_M
    rows_in_group = min(grid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group_size) % rows_in_group
    pid_n = (pid % group_size) // rows_in_group

    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :]
    b_ptrs = b_ptr + offs_n[None, :] * stride_bn + offs_k[:, None]
    sa_ptrs = a_scale_ptr + offs_m * stride_sa_m
    sb_ptr = b_scale_ptr + (pid_n * BLOCK_N // 128) * stride_sb_n

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        sa = tl.load(sa_ptrs + kb * stride_sa_k)
        sb = tl.load(sb_ptr + kb * stride_sb_k)
        acc += tl.dot(a, b) * (sa[:, None] * sb)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K

    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :]
    tl.store(c_ptrs, acc.to(tl.bfloat16), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


# --------------------------------------------------------------------------------------------------
# Host wrappers and reference
# --------------------------------------------------------------------------------------------------
def _check_inputs(a: torch.Tensor, a_scale: torch.Tensor, b: torch.Tensor, b_scale: torch.Tensor,
                  block_n: int) -> tuple[int, int, int]:  # fmt: skip
    """``(M, N, K)`` after checking shapes, dtypes and layouts of the four operands."""
    M, K = a.shape
    N, K_b = b.shape
    groups = triton.cdiv(K, SCALE_GROUP)
    assert K_b == K, f"A is (M, {K}) but B is (N, {K_b})"
    assert a.dtype == b.dtype == torch.float8_e4m3fn, (a.dtype, b.dtype)
    assert a_scale.dtype == b_scale.dtype == torch.float32, (a_scale.dtype, b_scale.dtype)
    assert tuple(a_scale.shape) == (M, groups), f"a_scale {tuple(a_scale.shape)} != {(M, groups)}"
    assert tuple(b_scale.shape) == (triton.cdiv(N, SCALE_GROUP), groups), tuple(b_scale.shape)
    assert a.stride(1) == 1 and b.stride(1) == 1, "A and B must be K-contiguous"
    assert SCALE_GROUP % block_n == 0, "BLOCK_N must divide 128"
    return M, N, K


def gluon_fp8_gemm(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    b: torch.Tensor,
    b_scale: torch.Tensor,
    block_m: int = 128,
    block_n: int = 128,
    num_stages: int = 3,
    num_warps: int = 8,
) -> torch.Tensor:
    """C = block-scaled A @ B^T with the Gluon kernel (one wgmma in flight during promotion).

    a: (M, K) float8_e4m3fn, K contiguous; a_scale: (M, K/128) float32; b: (N, K) float8_e4m3fn, K
    contiguous; b_scale: (N/128, K/128) float32. Returns C: (M, N) bfloat16. K must be a multiple of
    16 (TMA stride alignment); a ragged last K block is zero-filled by TMA.
    Note 128x128 tiles on 4 warps hold 3 x 128 fp32 accumulator registers per thread and spill; prefer
    num_warps=8 there (see ``--offline``).
    """
    if not HAS_GLUON:
        raise RuntimeError("this Triton build has no triton.experimental.gluon")
    M, N, K = _check_inputs(a, a_scale, b, b_scale, block_n)
    assert K % 16 == 0 and N % 8 == 0, "TMA needs 16-byte aligned row strides"
    c = torch.empty((M, N), device=a.device, dtype=torch.bfloat16)
    a_layout = gl.NVMMASharedLayout.get_default_for([block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([block_n, SCALE_GROUP], gl.float8e4nv)
    c_layout = gl.NVMMASharedLayout.get_default_for([block_m, block_n], gl.bfloat16)
    a_desc = TensorDescriptor.from_tensor(a, [block_m, SCALE_GROUP], a_layout)
    b_desc = TensorDescriptor.from_tensor(b, [block_n, SCALE_GROUP], b_layout)
    c_desc = TensorDescriptor.from_tensor(c, [block_m, block_n], c_layout)
    grid = (triton.cdiv(M, block_m) * triton.cdiv(N, block_n),)
    _gluon_fp8_gemm_kernel[grid](
        a_desc, b_desc, c_desc, a_scale, b_scale, M, N, K,
        a_scale.stride(0), a_scale.stride(1), b_scale.stride(0), b_scale.stride(1),
        NUM_STAGES=num_stages, GROUP_M=8, num_warps=num_warps,
    )  # fmt: skip
    return c


def triton_fp8_gemm(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    b: torch.Tensor,
    b_scale: torch.Tensor,
    block_m: int = 128,
    block_n: int = 128,
    num_stages: int = 3,
    num_warps: int = 8,
) -> torch.Tensor:
    """C = block-scaled A @ B^T with the plain Triton kernel (the baseline); same shapes and dtypes as
    :func:`gluon_fp8_gemm`: a (M, K) fp8, a_scale (M, K/128) fp32, b (N, K) fp8, b_scale (N/128, K/128)
    fp32, returns (M, N) bf16."""
    M, N, K = _check_inputs(a, a_scale, b, b_scale, block_n)
    c = torch.empty((M, N), device=a.device, dtype=torch.bfloat16)
    grid = (triton.cdiv(M, block_m) * triton.cdiv(N, block_n),)
    _triton_fp8_gemm_kernel[grid](
        a, b, c, a_scale, b_scale, M, N, K, a.stride(0), b.stride(0), c.stride(0),
        a_scale.stride(0), a_scale.stride(1), b_scale.stride(0), b_scale.stride(1),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=SCALE_GROUP, GROUP_M=8,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    return c


def reference(a: torch.Tensor, a_scale: torch.Tensor, b: torch.Tensor, b_scale: torch.Tensor) -> torch.Tensor:
    """fp32 torch reference: (M, N) float32 = A_deq @ B_deq^T with A_deq = A * a_scale broadcast over
    each 128-wide K group and B_deq = B * b_scale broadcast over each 128x128 block.
    a: (M, K) fp8, a_scale: (M, K/128) fp32, b: (N, K) fp8, b_scale: (N/128, K/128) fp32."""
    K = a.shape[1]
    N = b.shape[0]
    sa = a_scale.repeat_interleave(SCALE_GROUP, dim=1)[:, :K]
    sb = b_scale.repeat_interleave(SCALE_GROUP, dim=0).repeat_interleave(SCALE_GROUP, dim=1)[:N, :K]
    return (a.float() * sa) @ (b.float() * sb).t()


# --------------------------------------------------------------------------------------------------
# Offline compile (no GPU): registers, spills, wgmma waits
# --------------------------------------------------------------------------------------------------
@dataclass
class CompileReport:
    """What compiling one kernel for sm_90a gave."""

    kernel: str
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    ok: bool
    error: str = ""
    registers: int = -1
    spill_stores: int = -1
    spill_loads: int = -1
    ptx_waits: list[int] = field(default_factory=list)  # N of every wgmma.wait_group.sync.aligned N
    ttgir_waits: list[tuple[int, int]] = field(default_factory=list)  # (pendings, scf.for nesting depth)
    ptxas_warnings: list[str] = field(default_factory=list)
    shared_bytes: int = -1
    loop_instructions: int = -1  # static SASS instructions of the K loop (two K blocks), see sass_loop
    loop_barriers: int = -1  # CTA barriers (BAR) among them


def ttgir_waits(ttgir: str) -> list[tuple[int, int]]:
    """``(pendings, number of scf.for bodies around it)`` of every ``ttng.warp_group_dot_wait`` in
    ``ttgir``, in order (brace depth tracks the loop bodies; 0: outside every loop)."""
    waits: list[tuple[int, int]] = []
    loop_depths: list[int] = []
    depth = 0
    for line in ttgir.splitlines():
        if "scf.for" in line and line.rstrip().endswith("{"):
            loop_depths.append(depth)
        match = re.search(r"warp_group_dot_wait.*pendings = (\d+)", line)
        if match:
            waits.append((int(match.group(1)), len(loop_depths)))
        depth += line.count("{") - line.count("}")
        while loop_depths and depth <= loop_depths[-1]:
            loop_depths.pop()
    return waits


def _report(
    name: str, tile: tuple[int, int, int, int], build: Callable[[], Any], mma_per_iteration: int | None = 8
) -> CompileReport:
    """Compile with ``build`` and fill a :class:`CompileReport` from its TTGIR, PTX and ptxas -v, and,
    with ``mma_per_iteration`` (the Gluon loops: two K blocks of four k32 wgmmas), its K loop's SASS
    (:func:`benchmarks.sass_loop.main_loop`)."""
    block_m, block_n, warps, stages = tile
    report = CompileReport(name, block_m, block_n, warps, stages, ok=False)
    try:
        compiled = build()
    except Exception as err:  # a compile failure is a result to report, not a crash
        report.error = f"{type(err).__name__}: {err}"[-2000:]
        return report
    ptx = compiled.asm["ptx"]
    text = ptxas_verbose(ptx)
    registers = re.search(r"Used (\d+) registers", text)
    stores = re.search(r"(\d+) bytes spill stores", text)
    loads = re.search(r"(\d+) bytes spill loads", text)
    report.ok = True
    report.registers = int(registers.group(1)) if registers else -1
    report.spill_stores = int(stores.group(1)) if stores else -1
    report.spill_loads = int(loads.group(1)) if loads else -1
    report.ptx_waits = [int(n) for n in re.findall(r"wgmma\.wait_group\.sync\.aligned\s+(\d+)", ptx)]
    report.ttgir_waits = ttgir_waits(compiled.asm["ttgir"])
    serialized = re.compile(r"warning|\(C75\d\d\)", re.IGNORECASE)  # C75xx: wgmma serialization
    report.ptxas_warnings = [line.strip() for line in text.splitlines() if serialized.search(line)]
    report.shared_bytes = int(compiled.metadata.shared)
    if mma_per_iteration is not None:
        try:
            loop = main_loop(compiled.asm["cubin"], mma_per_iteration)
        except ValueError as err:  # no such loop (e.g. ptxas serialized the wgmmas): say so, go on
            report.ptxas_warnings.append(f"sass_loop: {err}")
        else:
            report.loop_instructions, report.loop_barriers = loop.instructions, loop.opcodes["BAR"]
    return report


def _gluon_signature(block_m: int, block_n: int) -> dict[str, str]:
    """Gluon kernel signature as a launch with TMA descriptors specializes it."""

    def desc(dtype: str, shape: list[int], layout: Any) -> str:
        return f"tensordesc<{dtype}[{shape[0]},{shape[1]}],{layout!r}>"

    a_layout = gl.NVMMASharedLayout.get_default_for([block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([block_n, SCALE_GROUP], gl.float8e4nv)
    c_layout = gl.NVMMASharedLayout.get_default_for([block_m, block_n], gl.bfloat16)
    return {
        "a_desc": desc("fp8e4nv", [block_m, SCALE_GROUP], a_layout),
        "b_desc": desc("fp8e4nv", [block_n, SCALE_GROUP], b_layout),
        "c_desc": desc("bf16", [block_m, block_n], c_layout),
        "a_scale_ptr": "*fp32", "b_scale_ptr": "*fp32",
        "M": "i32", "N": "i32", "K": "i32",
        "stride_sa_m": "i32", "stride_sa_k": "i32", "stride_sb_n": "i32", "stride_sb_k": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr",
    }  # fmt: skip


def compile_gluon(block_m: int = 128, block_n: int = 128, num_warps: int = 8, num_stages: int = 3) -> Any:
    """The Gluon kernel compiled for sm_90a without a GPU (scale pointers and M, N, K 16-divisible; the
    scale strides unspecialized, as K/128 = 56 for K = 7168 is not)."""
    fn = _gluon_fp8_gemm_kernel
    signature = _gluon_signature(block_m, block_n)
    constexprs = {"NUM_STAGES": num_stages, "GROUP_M": 8}
    aligned = ("a_scale_ptr", "b_scale_ptr", "M", "N", "K")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})


def compile_triton(block_m: int = 128, block_n: int = 128, num_warps: int = 8, num_stages: int = 3) -> Any:
    """The plain Triton kernel compiled for sm_90a without a GPU, specialized like a launch on
    contiguous operands (pointers, M, N, K, row strides 16-divisible; scale strides unspecialized)."""
    fn = _triton_fp8_gemm_kernel
    constexprs = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": SCALE_GROUP, "GROUP_M": 8}
    pointers = {"a_ptr": "*fp8e4nv", "b_ptr": "*fp8e4nv", "c_ptr": "*bf16",
                "a_scale_ptr": "*fp32", "b_scale_ptr": "*fp32"}  # fmt: skip
    signature = {n: "constexpr" if n in constexprs else pointers.get(n, "i32") for n in fn.arg_names}
    aligned = (*pointers, "M", "N", "K", "stride_am", "stride_bn", "stride_cm")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})


OFFLINE_TILES = [  # (block_m, block_n, num_warps, num_stages)
    (128, 128, 8, 3),  # the wrappers' defaults, the working point: first on the GPU
    (128, 128, 4, 3),  # spills and serializes (C7512): kept to show it
    (64, 128, 4, 3),
    (128, 64, 4, 4),
]


def offline_reports(tiles: list[tuple[int, int, int, int]] | None = None) -> list[CompileReport]:
    """Compile both kernels for every tile and return their reports (Gluon first per tile)."""
    reports = []
    for tile in tiles or OFFLINE_TILES:
        if HAS_GLUON:
            reports.append(_report("gluon", tile, lambda tile=tile: compile_gluon(*tile)))
        else:
            reports.append(CompileReport("gluon", *tile, ok=False, error="no triton.experimental.gluon"))
        reports.append(_report("triton", tile, lambda tile=tile: compile_triton(*tile), None))
    return reports


def print_offline(reports: list[CompileReport]) -> None:
    """Markdown table of :func:`offline_reports`, then errors and ptxas warnings."""
    print(f"triton {triton.__version__}, target sm_90a, BLOCK_K = 128")
    print("| kernel | BM | BN | warps | stages | compiles | regs | spill st/ld (B) | smem (B) "
          "| PTX wgmma.wait_group N | TTGIR pendings (one L per enclosing loop) "
          "| loop SASS / 2 K blocks (BAR) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        waits = " ".join(f"{p}{'L' * depth}" for p, depth in r.ttgir_waits)
        loop = f"{r.loop_instructions} ({r.loop_barriers})" if r.loop_instructions >= 0 else "-"
        print(f"| {r.kernel} | {r.block_m} | {r.block_n} | {r.num_warps} | {r.num_stages} | "
              f"{'yes' if r.ok else 'NO'} | {r.registers} | {r.spill_stores}/{r.spill_loads} | "
              f"{r.shared_bytes} | {r.ptx_waits} | {waits} | {loop} |")
    for r in reports:
        tag = f"{r.kernel} {r.block_m}x{r.block_n} w{r.num_warps} s{r.num_stages}"
        if r.error:
            print(f"\n{tag} compile error:\n{r.error}")
        for warning in r.ptxas_warnings:
            print(f"{tag} ptxas: {warning}")


# --------------------------------------------------------------------------------------------------
# GPU mode: correctness and timing on an H100
# --------------------------------------------------------------------------------------------------
def make_inputs(M: int, N: int, K: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random fp8 operands and positive fp32 scales on CUDA: a (M, K), a_scale (M, K/128), b (N, K),
    b_scale (N/128, K/128)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    groups = triton.cdiv(K, SCALE_GROUP)
    a = torch.randn(M, K, device="cuda", generator=gen).clamp(-448, 448).to(torch.float8_e4m3fn)
    b = torch.randn(N, K, device="cuda", generator=gen).clamp(-448, 448).to(torch.float8_e4m3fn)
    a_scale = torch.rand(M, groups, device="cuda", generator=gen) * 0.02 + 0.005
    b_scale = torch.rand(triton.cdiv(N, SCALE_GROUP), groups, device="cuda", generator=gen) * 0.02 + 0.005
    return a, a_scale, b, b_scale


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error ||out - ref|| / ||ref|| in fp32."""
    return float((out.float() - ref).norm() / ref.norm())


def bench_ms(fn: Callable[[], Any]) -> float:
    """Mean milliseconds of ``fn`` over CUDA-graph replays (triton.testing.do_bench_cudagraph, L2 warm;
    ``rep=50``: ~1 s per call, so all three prototypes fit one device call)."""
    return float(triton.testing.do_bench_cudagraph(fn, rep=50))


def is_cuda_fault(exc: BaseException) -> bool:
    """A sticky CUDA error (the tuner's :func:`~pytest_moetune.tuner.corrupts_cuda_context`: an illegal
    memory access, a misaligned address, a launch failure, ..., in the runtime's or Triton's words)
    leaves the context unusable: every later launch would fail the same way, so the GPU modes stop at
    the first one instead of reporting each later variant as FAILED. Any other error, a CUDA one
    included (out of memory, an invalid launch configuration), fails only its variant."""
    return corrupts_cuda_context(exc)


def run_gpu(tiles: list[tuple[int, int, int, int]], shapes: list[tuple[int, int, int]]) -> None:
    """Check both kernels against :func:`reference` and time them beside ``torch._scaled_mm``.

    Expected error: the fp8 products are exact in fp32 and accumulation is fp32 in both kernels and the
    reference (wgmma's fp8 path accumulates each 128-deep K block at reduced precision inside the tensor
    core, so allow ~1e-5 there), i.e. ~1e-6 to 1e-5 relative before the bf16 output rounding; after it
    the bf16 rounding (2^-9 relative per element) dominates: ~2e-3, bound 4e-3.
    """
    bound = 4e-3
    for M, N, K in shapes:
        a, a_scale, b, b_scale = make_inputs(M, N, K)
        ref = reference(a, a_scale, b, b_scale)
        flops = 2.0 * M * N * K
        # Dense fp8 rate: torch._scaled_mm with rowwise scales (use_fast_accum=False, its default: full
        # fp32 accumulation, as the kernels here; the fast-accumulate rate is higher).
        row_a = a_scale[:, :1].contiguous()
        row_b = b_scale.repeat_interleave(SCALE_GROUP, dim=0)[:N, :1].t().contiguous()

        def dense(a: torch.Tensor = a, b: torch.Tensor = b, sa: torch.Tensor = row_a,
                  sb: torch.Tensor = row_b) -> torch.Tensor:  # fmt: skip
            return torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)

        dense_ms = bench_ms(dense)
        dense_tflops = flops / dense_ms / 1e9
        print(f"\nM={M} N={N} K={K}: torch._scaled_mm rowwise {dense_ms * 1e3:.1f} us "
              f"{dense_tflops:.0f} TFLOP/s (100%)")  # fmt: skip
        for block_m, block_n, warps, stages in tiles:
            for name, fn in (("gluon", gluon_fp8_gemm), ("triton", triton_fp8_gemm)):
                operands = (a, a_scale, b, b_scale)
                config = {"block_m": block_m, "block_n": block_n, "num_stages": stages, "num_warps": warps}

                def call(fn: Callable[..., torch.Tensor] = fn, operands: tuple[torch.Tensor, ...] = operands,
                         config: dict[str, int] = config) -> torch.Tensor:  # fmt: skip
                    return fn(*operands, **config)

                tag = f"{name:6s} {block_m}x{block_n} w{warps} s{stages}"
                try:
                    err = rel_error(call(), ref)
                    ms = bench_ms(call)
                except Exception as exc:  # report and go on to the next tile, unless CUDA is gone
                    print(f"  {tag}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
                    if is_cuda_fault(exc):
                        raise
                    continue
                tflops = flops / ms / 1e9
                verdict = "ok" if err < bound else f"WRONG (bound {bound})"
                print(f"  {tag}: rel err {err:.2e} {verdict}; {ms * 1e3:.1f} us {tflops:.0f} TFLOP/s "
                      f"({100 * tflops / dense_tflops:.0f}% of dense fp8)")  # fmt: skip


def mode_parser(doc: str) -> argparse.ArgumentParser:
    """The Gluon scripts' command line: ``--offline`` (compile for sm_90a and report, CPU only) or
    ``--gpu`` (correctness and timing on an H100); with neither, the GPU mode where CUDA exists
    (:func:`wants_gpu`). ``doc``'s first paragraph is the description."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="compile for sm_90a and report (CPU only)")
    mode.add_argument("--gpu", action="store_true", help="correctness and timing on an H100")
    return parser


def wants_gpu(args: argparse.Namespace) -> bool:
    """``--gpu``, or no mode given and a CUDA device present."""
    return bool(args.gpu or (not args.offline and torch.cuda.is_available()))


def main() -> None:
    args = mode_parser(__doc__).parse_args()
    if wants_gpu(args):
        # the ragged shape checks the tails (odd K-block count 33, a part K block, M and N tails)
        shapes = [(4000, 4032, 4160), (4096, 4096, 4096), (4096, 4096, 7168)]
        run_gpu(OFFLINE_TILES, shapes)
    else:
        print_offline(offline_reports())


if __name__ == "__main__":
    main()
