"""fp8 block-scale MoE down GEMM for Hopper in Triton Gluon: h rows and w2 rows both through a TMA ring,
one wgmma kept in flight while the previous K block is promoted, routing weight and row scatter in the
epilogue.

    PYTHONPATH=. python benchmarks/gluon_fp8_down.py --offline   # CPU only: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_fp8_down.py --gpu       # H100: vs main, timed

Same inputs and output as ``kernels.fused_moe._down_kernel`` with ``BLOCK_SCALE=True`` and TMA (main's
``_launch_down(..., scales=(hs, w2s))``), for one rank's L local experts::

    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, cdiv(I,128)) float32   per row, per 128-wide group
        (rows in padded sorted order, the gate/up kernel's output; contiguous, so A tiles come by TMA)
    w2q (L, H, I) float8_e4m3fn         w2s (L, cdiv(H,128), cdiv(I,128)) float32   per 128x128 block
    topk_weights (T*k,) float32 (the (T, k) routing weights, flat: index = slot)
    sorted_ids (max_padded,) int32, expert_ids (max_blocks,) int32, num_padded (1,) int32
        (kernels.align.moe_align; padding rows hold num_slots = T*k)
    y   (T*k, H) bfloat16 (output; x's dtype in main, bf16 here)

Row r of row block b (expert e = expert_ids[b]), slot s = sorted_ids[r], for real rows (s < num_slots):
    y[s, n] = bf16( topk_weights[s] * sum_kb (hq[r, kb] . w2q[e, n, kb]) * hs[r, kb] * w2s[e, n // 128, kb] )
with the routing weight multiplied in fp32 before the single rounding to bf16, as main does. Padding
rows (s == num_slots) are not stored; row blocks at or past ``num_padded`` exit at once.

Schedule (the ``benchmarks/gluon_fp8_gemm.py`` scheme with the MoE addressing): per K block (BLOCK_K =
128, one scale group) the A tile (rows ``off_m .. off_m+BLOCK_M`` of hq) and the B tile (rows
``e*H + off_n`` of w2 viewed as (L*H, I)) land by TMA in a NUM_STAGES ring with one mbarrier per slot.
Block k's wgmma is issued asynchronously into a temporary, ``wgmma.wait_group 1`` retires block k-1's,
its ring slot is refilled, and block k-1 is promoted (``acc += t * hs[rows, kb] * w2s[e, nb, kb]``)
while block k runs. The K loop is unrolled by two (temporaries never swap roles at the back-edge:
ptxas C7515) and each promotion goes through the no-op ``_gluon_pin`` wait (no sinking of the
promotion below the next issue: C7514). Live fp32 tiles: accumulator + 2 temporaries, i.e.
``3 * BLOCK_M * BLOCK_N / (32 * num_warps)`` registers per thread: 192 for 128x128 / 8 warps,
64x128 / 4 warps and 128x64 / 4 warps, 96 for the 8-warp 64-row tiles, 384 (spills, C7512) for
128x128 / 4 warps.

BLOCK_N 64 or 128: one w2 scale per tile and K block (a scalar). BLOCK_N = 256 (main's Triton kernel
uses it) spans two w2 scale blocks: one 256-row w2 box per K block, one wgmma over the whole tile (at
64 rows on 8 warps each warpgroup issues an m64n128 over its 128 columns), and the promotion scale
picks the second block's scale on the upper 128 columns (constant per register, so it folds). Until
session 7 it ran as two 128-column halves issued as a pair (``wait_group 2``, 2 x m64n64 per
warpgroup), the schedule the gate/up's wide kernel replaced.

Epilogue: ``acc * w[slot]`` in fp32, bf16, converted to a row-major blocked layout (16-byte stores per
thread) and stored with pointer stores at row ``slot`` under the mask ``slot < num_slots`` (TMA cannot
scatter rows on Hopper).

Offline result (triton 3.6.0 bundled ptxas, sm_90a; ``--offline``), Gluon kernel, registers / spills:
    128x128, 8 warps, 3/4 stages: 228/226 regs, no spills, no C75xx. THE DEFAULT.
    128x64 4 warps s3: 244; 128x64 8 warps s4: 128; 64x128 4 warps s3/s4: 228/226; 64x128 8 warps s4:
    128; 64x64 4 warps s4: 128 -- all without spills or C75xx.
    64x256, 8 warps, 3/4 stages: 231 regs, no spills, no C75xx, ``wait_group 1`` (the paired form it
    replaced: 236 regs, ``wait_group 2``).
    128x128, 4 warps: 255 regs, ~2.6 KB spills, ptxas C7512 (wgmmas serialized for lack of registers);
    128x256, 8 warps: the same (255 regs, ~2.5 KB spills, C7512).
    Loop PTX per K block: ``mbarrier.try_wait``, 4 x ``wgmma.mma_async`` k32 (m64n128 for 128-wide tiles
    on 4 warps or 128 rows on 8 warps and for 64x256 on 8 warps, whose warps split N), commit,
    ``wgmma.wait_group 1`` retiring block k-1, TMA refill, promotion FFMAs, ``wait_group 1`` pin;
    ``wait_group 0`` only after the loop. Gluon puts ``bar.sync``s before the mbarrier wait and each
    TMA issue (3-4 per K block), so no warpgroup refills a slot another is still reading; their cost
    is unmeasured. Main's Triton ``_down_kernel`` (fp8, TMA) at its fp8 tiles:
    ``wait_group 0`` right after every dot; 128x256 / 8 warps spills ~0.5 KB.

STATUS: run on an H100 (BENCHMARKS.md, device run 36): bit-identical to main's Triton down; bm128 bn128
/ 8 warps / 4 stages 1.53x main's fastest bm128 tile. The kernels moved to ``kernels/gluon_down.py``,
where ``kernels.fused_moe_fp8`` runs them for Gluon tiles; this script keeps the offline compile and
the GPU comparison. Branch ``ws-down`` (session 10) made the kernel persistent and warp-specialized
(a loader warpgroup issues the TMA ring; the math loop keeps 2 CTA barriers per two K blocks), with
the same per-tile arithmetic: the description above is the schedule it replaced, whose numbers it
quotes; the kernel's own docstring and BENCHMARKS.md runs 7-8 have the new one (H200, bit-identical
to Triton's down at every variant here, bm128 bn128 s4 929 TFLOP/s).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import triton

from benchmarks.gluon_fp8_gemm import (
    HAS_GLUON,
    TARGET,
    CompileReport,
    _report,
    bench_ms,
    is_cuda_fault,
    mode_parser,
    print_offline,
    wants_gpu,
)
from benchmarks.gluon_fp8_moe import expert_weights_fp8, fastest_main_tile
from kernels.tactics import GemmTile

if HAS_GLUON:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from kernels.gluon_down import LOADER_REGS, LOADER_WARPS, _gluon_down_kernel, launch_gluon_down

GROUP = 128  # scale group width; BLOCK_K


# --------------------------------------------------------------------------------------------------
# Host wrapper (GPU)
# --------------------------------------------------------------------------------------------------
def gluon_down_fp8(
    hq: torch.Tensor,
    hs: torch.Tensor,
    w2q: torch.Tensor,
    w2s: torch.Tensor,
    topk_weights: torch.Tensor,
    alignment: Any,
    block_n: int = 128,
    num_warps: int = 8,
    num_stages: int = 3,
    out: torch.Tensor | None = None,
    *,
    group_m: int = 8,
) -> torch.Tensor:
    """Down GEMM + routing weight + row scatter with the Gluon kernel (BLOCK_M = ``alignment.block_m``).

    hq: (max_padded, I) float8_e4m3fn, unit stride in I, 16-byte aligned rows, I % 128 == 0;
    hs: (max_padded, I/128) float32, unit stride in the group dim; w2q: (L, H, I) float8_e4m3fn
    contiguous, H % block_n == 0; w2s: (L, H/128, I/128) float32 contiguous; topk_weights: (T, k) or
    (T*k,) float32 contiguous; alignment: ``kernels.align.Alignment`` (block_m 64 or 128 for the tiles
    compiled offline). ``out``: optional (T*k, H) bfloat16 contiguous buffer. Returns y (T*k, H) bfloat16
    with the rows of real slots written (rows of slots without a local expert are left untouched).
    """
    if not HAS_GLUON:
        raise RuntimeError("this Triton build has no triton.experimental.gluon")
    max_padded, i = hq.shape
    num_local, h, i_w = w2q.shape
    num_slots = alignment.num_slots
    block_m = alignment.block_m
    assert hq.dtype == torch.float8_e4m3fn and w2q.dtype == torch.float8_e4m3fn, (hq.dtype, w2q.dtype)
    assert hs.dtype == torch.float32 and w2s.dtype == torch.float32, (hs.dtype, w2s.dtype)
    assert topk_weights.dtype == torch.float32, f"topk_weights must be float32, got {topk_weights.dtype}"
    assert i_w == i, f"hq is (max_padded, I={i}) but w2q is {tuple(w2q.shape)}"
    assert i % GROUP == 0, f"I={i} must be a multiple of 128 (no K tail in the Gluon kernel)"
    assert block_n in (64, 128, 256), f"block_n must be 64, 128 or 256, got {block_n}"
    assert h % block_n == 0, f"H={h} must be a multiple of block_n={block_n}"
    assert max_padded == alignment.max_padded, f"hq has {max_padded} rows, alignment {alignment.max_padded}"
    assert block_m in (64, 128), f"alignment.block_m must be 64 or 128, got {block_m}"
    assert hq.stride(1) == 1 and (hq.stride(0) * hq.element_size()) % 16 == 0, f"hq strides {hq.stride()}"
    assert hq.data_ptr() % 16 == 0, "hq must be 16-byte aligned for TMA"
    assert tuple(hs.shape) == (max_padded, i // GROUP) and hs.stride(1) == 1, (tuple(hs.shape), hs.stride())
    assert w2q.is_contiguous(), f"w2q must be contiguous, strides {w2q.stride()}"
    assert tuple(w2s.shape) == (num_local, triton.cdiv(h, GROUP), i // GROUP), tuple(w2s.shape)
    assert w2s.is_contiguous(), f"w2s must be contiguous, strides {w2s.stride()}"
    assert topk_weights.is_contiguous() and topk_weights.numel() == num_slots, (
        f"topk_weights must be contiguous with T*k={num_slots} elements, got {tuple(topk_weights.shape)}"
    )
    if out is None:
        out = torch.empty((num_slots, h), dtype=torch.bfloat16, device=hq.device)
    assert out.dtype == torch.bfloat16 and tuple(out.shape) == (num_slots, h) and out.is_contiguous(), (
        f"out must be a contiguous ({num_slots}, {h}) bfloat16 tensor, got {tuple(out.shape)} {out.dtype}"
    )
    tile = GemmTile(block_n, GROUP, group_m, num_warps, num_stages, tma=True, gluon=True)
    rows = torch.empty((max_padded, h), dtype=torch.bfloat16, device=hq.device)  # the alignment's order
    launch_gluon_down(hq, hs, w2q, w2s, rows, topk_weights, alignment, tile)
    local = alignment.slot_rows >= 0
    out[local] = rows[alignment.slot_rows[local].long()]  # one row per slot, as main's Triton down
    return out


# --------------------------------------------------------------------------------------------------
# Offline compile (no GPU)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Variant:
    """One compile point of the Gluon down kernel."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    @property
    def tile(self) -> tuple[int, int, int, int]:
        return (self.block_m, self.block_n, self.num_warps, self.num_stages)


OFFLINE_VARIANTS = [
    Variant(128, 128, 8, 3),  # the wrapper's default: 192 fp32 tile registers per thread
    Variant(128, 128, 8, 4),
    Variant(128, 128, 4, 3),  # 384 tile registers: expected to spill
    Variant(128, 64, 4, 3),
    Variant(128, 64, 8, 4),
    Variant(64, 128, 4, 3),
    Variant(64, 128, 4, 4),
    Variant(64, 128, 8, 4),
    Variant(64, 64, 4, 4),
    Variant(64, 256, 8, 3),  # 3 live 64x256 tiles = 192 registers per thread
    Variant(64, 256, 8, 4),
    Variant(128, 256, 8, 3),  # 384 tile registers per thread, expected to spill
]

# (block_m, block_n, warps) with 384 fp32 tile registers per thread: spills, wgmmas serialized (C7512)
SPILLING = {(128, 128, 4), (128, 256, 8)}

# main's Triton _down_kernel (fp8, TMA) at its fp8 down tiles for block_m 64 and 128
# (kernels.tactics._DOWN_FP8: (block_n, block_k, warps, stages)).
TRITON_TILES = [(64, 128, 4, 3), (64, 256, 8, 3), (128, 128, 8, 4), (128, 256, 8, 3)]


def compile_gluon_down(variant: Variant, *, block_scale: bool = True) -> Any:
    """The Gluon down kernel compiled for sm_90a without a GPU, specialized like a launch on
    deepseek-like shapes (pointers, N, K and the hs row stride 16-divisible; w2s strides not); fp8
    with ``block_scale``, else bf16 h and w2 with block_k 64 (the 16-bit tiles)."""
    fn = _gluon_down_kernel
    b_rows = variant.block_n
    block_k, in_gl, in_name = (GROUP, gl.float8e4nv, "fp8e4nv") if block_scale else (64, gl.bfloat16, "bf16")
    a_layout = gl.NVMMASharedLayout.get_default_for([variant.block_m, block_k], in_gl)
    b_layout = gl.NVMMASharedLayout.get_default_for([b_rows, block_k], in_gl)
    y_layout = gl.NVMMASharedLayout.get_default_for([variant.block_m, b_rows], gl.bfloat16)
    signature = {
        "a_desc": f"tensordesc<{in_name}[{variant.block_m},{block_k}],{a_layout!r}>",
        "b_desc": f"tensordesc<{in_name}[{b_rows},{block_k}],{b_layout!r}>",
        "y_desc": f"tensordesc<bf16[{variant.block_m},{b_rows}],{y_layout!r}>",
        "hs_ptr": "*fp32", "ws_ptr": "*fp32",
        "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
        "topk_weights_ptr": "*fp32",
        "N": "i32", "K": "i32", "num_slots": "i32", "max_blocks": "i32",
        "stride_hsm": "i32", "stride_wse": "i32", "stride_wsn": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr",
        "LOADER_WARPS": "constexpr", "LOADER_REGS": "constexpr", "BLOCK_SCALE": "constexpr",
    }  # fmt: skip
    constexprs = {"NUM_STAGES": variant.num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": LOADER_REGS, "BLOCK_SCALE": block_scale}  # fmt: skip
    aligned = ("hs_ptr", "ws_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr",
               "topk_weights_ptr", "N", "K", "stride_hsm")  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    options = {"num_warps": variant.num_warps, "num_stages": variant.num_stages}
    return triton.compile(source, target=TARGET, options=options)


def compile_triton_down(block_m: int, block_n: int, num_warps: int, num_stages: int) -> Any:
    """Main's Triton ``_down_kernel`` (BLOCK_SCALE, TMA h and w2, BLOCK_K 128, bf16 y) compiled for
    sm_90a, for the register/wait comparison."""
    from triton.compiler import ASTSource

    from kernels.fused_moe import _down_kernel

    fn = _down_kernel
    constexprs = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": GROUP, "GROUP_M": 8, "EVEN_K": True,
                  "DOT_PRECISION": "tf32", "USE_TMA": True, "BLOCK_SCALE": True, "PDL": False}  # fmt: skip
    types = {"h_ptr": f"tensordesc<fp8e4nv[{block_m},{GROUP}]>",
             "w2_ptr": f"tensordesc<fp8e4nv[{block_n},{GROUP}]>",
             "y_ptr": "*bf16", "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
             "topk_weights_ptr": "*fp32", "hs_ptr": "*fp32", "w2s_ptr": "*fp32"}  # fmt: skip
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in fn.arg_names}
    aligned = ("y_ptr", "hs_ptr", "w2s_ptr", "N", "K", "stride_hm", "stride_ym")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})


def offline_reports(variants: list[Variant] | None = None, with_triton: bool = True, *,
                    block_scale: bool = True) -> list[CompileReport]:  # fmt: skip
    """Compile every Gluon variant (kernel ``gluon-down``; fp8, or bf16 without ``block_scale``) and,
    with ``with_triton``, main's Triton ``_down_kernel`` at its fp8 tiles (kernel ``triton-main``)."""
    reports = []
    for v in variants if variants is not None else OFFLINE_VARIANTS:
        if HAS_GLUON:
            reports.append(_report("gluon-down", v.tile,
                                   lambda v=v: compile_gluon_down(v, block_scale=block_scale)))  # fmt: skip
        else:
            reports.append(CompileReport("gluon-down", *v.tile, ok=False, error="no gluon"))
    if with_triton:
        for bm, bn, warps, stages in TRITON_TILES:
            tile = (bm, bn, warps, stages)
            reports.append(_report("triton-main", tile, lambda t=tile: compile_triton_down(*t), None))
    return reports


# --------------------------------------------------------------------------------------------------
# GPU mode
# --------------------------------------------------------------------------------------------------
def run_gpu(variants: list[Variant], num_tokens: int = 4096) -> None:
    """deepseek-r1 DEP8 (L=32 local experts, H=7168, I=2048, top_k=8), balanced routing, hq/hs from
    quantizing random bf16 h with ``quantize_fp8_groups``: for each block_m, main's Triton
    ``_launch_down`` at every ``_DOWN_FP8[block_m]`` tile (fastest one is the reference and the
    speed-up baseline), then each Gluon variant checked against it and timed.

    Expected agreement: both kernels add the same fp32 products per 128-deep K block in the same
    order; FMA contraction and the wgmma's internal accumulation may differ at ~1e-6 relative, so the
    bf16 output rounding (2^-9 relative per element, flipped for a few elements) dominates:
    relative Frobenius error ~1e-3 or less, bound 1e-2.
    """
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_down
    from kernels.quant import quantize_fp8_groups
    from kernels.tactics import _DOWN_FP8

    case = CASES["deepseek-r1-dep8"]
    dev = torch.device("cuda")
    num_local, k, h, i = case.local_experts, case.top_k, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    w2q, w2s = expert_weights_fp8(num_local, h, i, gen)
    ids, weights = balanced_topk(num_tokens, case, 0, dev)
    topk_weights = weights.view(-1)
    rows = num_tokens * k  # every slot is local under DEP balanced routing
    flops = 2.0 * rows * i * h
    print(f"deepseek-r1-dep8 T={num_tokens}: L={num_local} H={h} I={i} top_k={k}, {rows} routed rows, "
          f"{flops / 1e12:.3f} TFLOP per call (2 * rows * I * H)")  # fmt: skip

    for block_m in dict.fromkeys(v.block_m for v in variants):  # the working point (first) first
        al = moe_align(ids, block_m, num_local, case.offset)
        hbf = torch.randn(al.max_padded, i, device=dev, generator=gen, dtype=torch.bfloat16)
        hq, hs = quantize_fp8_groups(hbf)
        del hbf
        y_ref = torch.zeros((rows, h), dtype=torch.bfloat16, device=dev)

        def ref_call(tile: Any, al: Any = al, y_ref: torch.Tensor = y_ref, hq: torch.Tensor = hq,
                     hs: torch.Tensor = hs) -> None:  # fmt: skip
            _launch_down(hq, w2q, y_ref, topk_weights, al, tile, "tf32", scales=(hs, w2s))

        ref_ms, ref_tile = fastest_main_tile(_DOWN_FP8[block_m], ref_call, flops, f"bm{block_m}")
        y_ref.zero_()
        _launch_down(hq, w2q, y_ref, topk_weights, al, ref_tile, "tf32", scales=(hs, w2s))
        torch.cuda.synchronize()
        ref32 = y_ref.float()
        for v in (v for v in variants if v.block_m == block_m):
            tag = f"gluon-down bm{v.block_m} bn{v.block_n} w{v.num_warps} s{v.num_stages}"
            y = torch.zeros_like(y_ref)

            def call(v: Variant = v, al: Any = al, y: torch.Tensor = y, hq: torch.Tensor = hq,
                     hs: torch.Tensor = hs) -> torch.Tensor:  # fmt: skip
                return gluon_down_fp8(hq, hs, w2q, w2s, topk_weights, al, v.block_n, v.num_warps,
                                      v.num_stages, out=y)  # fmt: skip

            try:
                call()
                torch.cuda.synchronize()
                rel = float((y.float() - ref32).norm() / ref32.norm())
                ms = bench_ms(call)
            except Exception as exc:  # report and go on, unless CUDA is gone
                print(f"  {tag}: FAILED {type(exc).__name__}: {str(exc)[:400]}")
                if is_cuda_fault(exc):
                    raise
                continue
            verdict = "ok" if rel < 1e-2 else "WRONG (bound 1e-2)"
            print(f"  {tag}: rel err {rel:.2e} {verdict}; {ms * 1e3:.1f} us {flops / ms / 1e9:.0f} TFLOP/s "
                  f"({ref_ms / ms:.2f}x triton-main {ref_tile.name})")  # fmt: skip


def main() -> None:
    parser = mode_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per rank for --gpu")
    args = parser.parse_args()
    if wants_gpu(args):
        run_gpu([v for v in OFFLINE_VARIANTS if v.tile[:3] not in SPILLING], args.tokens)
    else:
        print_offline(offline_reports())


if __name__ == "__main__":
    main()
