"""fp8 block-scale MoE gate/up GEMM for Hopper in Triton Gluon: gathered x rows through cp.async, gate and
up weight tiles through a TMA ring, and one wgmma kept in flight while finished K blocks are promoted.

    PYTHONPATH=. python benchmarks/gluon_fp8_moe.py --offline   # CPU only: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_fp8_moe.py --gpu       # H100: check against main, time

Same inputs and outputs as ``kernels.fused_moe._gate_up_kernel`` with ``BLOCK_SCALE=True`` (DeepSeek
fp8 recipe), for one rank's L local experts::

    xq  (T, H) float8_e4m3fn      xs  (T, cdiv(H,128)) float32        per token, per 128-wide group
    w1q (L, 2I, H) float8_e4m3fn  w1s (L, cdiv(2I,128), cdiv(H,128))  per 128x128 block; rows [0, I)
                                  float32                             gate, rows [I, 2I) up
    sorted_ids (max_padded,) int32, expert_ids (max_blocks,) int32, num_padded (1,) int32
                                  (kernels.align.moe_align; padding rows hold num_slots = T*k)
    hq  (max_padded, I) float8_e4m3fn   hs (max_padded, cdiv(I,128)) float32   (outputs)

Row r of block b (expert e = expert_ids[b]) reads x[sorted_ids[r] // k] (token 0 for padding rows), and
    gate[r, n] = sum_kb (x[r, kb] . w1[e, n, kb]) * xs[tok, kb] * w1s[e, n // 128, kb]
    up[r, n]   = the same with w1 rows I + n,     h = silu(gate) * up,
then h is quantized per row per 128-column group (each program owns one group, BLOCK_N = 128):
``hs[r, g] = max(|h[r, group g]|, 1e-10) / 448`` and ``hq = clamp(h / hs, -448, 448)`` in e4m3, with
the same IEEE divisions as main's epilogue. Blocks past ``num_padded`` exit at once.

Data movement per K block (BLOCK_K = 128): the program's 256 weight rows (gate rows ``e*2I + n0 ..``,
up rows ``e*2I + I + n0 ..``) come by TMA into a NUM_STAGES ring with one mbarrier per slot; the
BLOCK_M gathered x rows cannot come by TMA on Hopper (no gather mode before sm_100), so every thread
issues 16-byte ``cp.async`` copies (``gluon...ampere.async_copy``) of its rows into the same ring slot's
A buffer (NVMMA 128-byte swizzle), one commit group per K block. Before a block's wgmmas each thread
waits for its own copies (``cp.async.wait_group NUM_STAGES-2``, the commit count is the same every
step), fences the generic-proxy writes for the async proxy and the CTA meets at a barrier.

The schedules (``kernels/gluon_gate_up.py`` has the two that ship, picked by BLOCK_M), all
wgmma-asynchronous with the promotion ``acc += t * (xs * ws)`` done in fp32 registers while the
tensor core works:
  * ``wide`` (block_m 64, 8 warps): the weight slot is four 64-row boxes (gate, up, gate + 64,
    up + 64), so one 64 x 256 wgmma gives each warpgroup one m64n128 instruction over the gate and up
    values of the same 64 h columns; one wgmma in flight while the previous K block is promoted with
    a per-column scale; loop unrolled by two. 3 live 64 x 256 tiles.
  * ``halves`` (block_m 128, 8 warps): a slot of 128 weight rows (gate and up of 64 h columns), each
    warpgroup one m64n128 wgmma over its 64 rows; two passes over K per program (64 h columns each),
    pass 0's h kept as fp32 in shared memory until the group's scale is known. 3 live 128 x 128 tiles.
  * ``stagger`` (block_m 128, runs 36-54, removed in session 8 for ``halves``): gate and up as two
    128-wide wgmmas, retired alternately; 4 live tiles, ptxas serialized its wgmmas (C7514).
  * ``paired`` (runs 36 and 45, removed in session 7 for ``wide``): per warpgroup a gate and an up
    m64n64 wgmma issued together, ``wait_group 2``; 6 live 64 x 128 tiles.

The ptxas traps of ``benchmarks/gluon_fp8_gemm.py`` apply: temporaries that swap roles at a loop
back-edge make ptxas serialize every wgmma (C7515; hence the unroll by two), and promotions that LLVM
sinks below the next issue into the same registers do too (C7514; hence the no-op
``wgmma.wait_group`` "pin" after each promotion).

Offline result (triton 3.6.0 bundled ptxas, sm_90a; ``--offline``), the Gluon kernel only:
    wide    64 rows, 8 warps, 3/4 stages: 242 registers, no spills, no C75xx message, loop waits
            ``wgmma.wait_group 1`` only (retire + pin), smem 164 KB at 4 stages. THE WORKING POINT.
    paired  64 rows, 8 warps (removed): 238-242 registers, no spills; 4 warps and 128 rows spill.
    halves  128 rows, 8 warps, 3/4/5 stages: 248-252 registers, no spills, ``wgmma.wait_group 1`` in both
            passes' loops, smem 147/180/213 KB.
    stagger 128 rows, 8 warps (removed): 255 registers, 160 B of spills, C7514 (wgmmas serialized).
Main's Triton kernel compiled the same way spills 52 B at 64/8 warps and waits ``wait_group 0`` after
every dot.

STATUS (BENCHMARKS.md, runs 36, 45 and 54, H100): bit-identical to main's Triton gate/up. deepseek-r1
DEP8: wide bm64 / 8 warps / 4 stages 758-798 TFLOP/s at 4000 tokens (1.37-1.43x main's fastest tile)
and 761-781 at 16384; halves bm128 756-758 and 745-783 (stagger 661 and 659). The kernels live in
``kernels/gluon_gate_up.py``, where ``kernels.fused_moe_fp8`` runs them for Gluon tiles; this script
keeps the offline compile and the GPU comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
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
from kernels.tactics import GemmTile

if HAS_GLUON:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from kernels.gluon_gate_up import (
        H_BOX,
        SCHEMES,
        WEIGHT_ROWS,
        _gluon_gate_up_fp8_kernel,
        launch_gluon_gate_up,
    )

GROUP = 128  # scale group width; BLOCK_N and BLOCK_K


# --------------------------------------------------------------------------------------------------
# Host wrapper (GPU)
# --------------------------------------------------------------------------------------------------
def gluon_gate_up_fp8(
    xq: torch.Tensor,
    xs: torch.Tensor,
    w1q: torch.Tensor,
    w1s: torch.Tensor,
    alignment: Any,
    block_m: int | None = None,
    num_warps: int = 8,
    num_stages: int = 4,
    *,
    top_k: int | None = None,
    group_m: int = 8,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
    sorted_x: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate/up GEMM + silu*up + e4m3 group quantization of h with the Gluon kernel.

    xq: (T, H) float8_e4m3fn, contiguous rows, H % 128 == 0; xs: (T, H/128) float32;
    w1q: (L, 2I, H) float8_e4m3fn contiguous (gate rows [0, I), up rows [I, 2I)), I % 128 == 0;
    w1s: (L, 2I/128, H/128) float32; alignment: ``kernels.align.Alignment`` of the routing with
    ``alignment.block_m == block_m`` (``block_m`` None takes it from the alignment).
    ``top_k`` defaults to ``alignment.num_slots // T``. Returns ``(hq (max_padded, I) float8_e4m3fn,
    hs (max_padded, I/128) float32)``; rows at or past ``num_padded`` are not written.
    With ``sorted_x``, ``xq``/``xs`` are already in the alignment's row order (``max_padded`` rows,
    ``kernels.quant.quantize_fp8_groups_sorted``) and x comes by TMA; ``top_k`` is then required.
    """
    if not HAS_GLUON:
        raise RuntimeError("this Triton build has no triton.experimental.gluon")
    t_, h = xq.shape
    num_local, two_i, h_w = w1q.shape
    i = two_i // 2
    block_m = alignment.block_m if block_m is None else block_m
    assert alignment.block_m == block_m, f"alignment made for block_m={alignment.block_m}, not {block_m}"
    assert h_w == h and h % GROUP == 0 and i % GROUP == 0, (tuple(xq.shape), tuple(w1q.shape))
    assert xq.dtype == w1q.dtype == torch.float8_e4m3fn
    assert xs.dtype == w1s.dtype == torch.float32
    assert xs.shape[0] == t_ and xs.shape[1] == h // GROUP and xs.stride(1) == 1
    assert tuple(w1s.shape) == (num_local, two_i // GROUP, h // GROUP)
    assert xq.stride(1) == 1 and xq.stride(0) % 16 == 0, "x rows are copied in 16-byte cp.async chunks"
    assert w1q.is_contiguous()
    assert not sorted_x or (top_k is not None and t_ == alignment.max_padded), "sorted_x: max_padded rows"
    k = top_k if top_k is not None else alignment.num_slots // t_
    max_padded = alignment.max_padded
    if out is None:
        hq = torch.empty((max_padded, i), dtype=torch.float8_e4m3fn, device=xq.device)
        hs = torch.empty((max_padded, i // GROUP), dtype=torch.float32, device=xq.device)
    else:
        hq, hs = out
        assert hq.shape == (max_padded, i) and hq.dtype == torch.float8_e4m3fn, (hq.shape, hq.dtype)
        assert hs.shape == (max_padded, i // GROUP) and hs.dtype == torch.float32, (hs.shape, hs.dtype)
    tile = GemmTile(GROUP, GROUP, group_m, num_warps, num_stages, tma=True, gluon=True)
    launch_gluon_gate_up(xq, xs, w1q, w1s, hq, hs, alignment, tile, k, sorted_x=sorted_x)
    return hq, hs


# --------------------------------------------------------------------------------------------------
# Offline compile (no GPU)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Variant:
    """One compile point: BLOCK_M (which picks the schedule), warps, ring depth, and whether x comes
    already in the alignment's row order by TMA (``sorted_x``) or is gathered by cp.async."""

    block_m: int
    num_warps: int
    num_stages: int
    sorted_x: bool = False

    @property
    def scheme(self) -> str:
        return SCHEMES[self.block_m]

    @property
    def kernel_name(self) -> str:
        """``gluon-<scheme>``, ``-sorted`` appended where x comes by TMA."""
        return f"gluon-{self.scheme}" + ("-sorted" if self.sorted_x else "")

    @property
    def tile(self) -> tuple[int, int, int, int]:
        return (self.block_m, GROUP, self.num_warps, self.num_stages)


SORTED_VARIANTS = [Variant(64, 8, 4, True), Variant(128, 8, 4, True), Variant(128, 8, 3, True)]
"""x already in the alignment's row order, by TMA (GPU runs only, next to the gathering ones)."""

OFFLINE_VARIANTS = [
    Variant(64, 8, 4),  # wide, the working point: no spills, no C75xx, wait_group 1 in the loop
    Variant(64, 8, 3),
    Variant(64, 8, 5),
    Variant(128, 8, 4),  # halves
    Variant(128, 8, 3),
    Variant(128, 8, 5),
]


def compile_gluon_moe(variant: Variant) -> Any:
    """The Gluon gate/up kernel compiled for sm_90a without a GPU (see :func:`compile_gate_up_kernel`)."""
    return compile_gate_up_kernel(
        _gluon_gate_up_fp8_kernel, [2, WEIGHT_ROWS[variant.scheme], GROUP], variant.block_m,
        variant.num_warps,
        {"NUM_STAGES": variant.num_stages, "GROUP_M": 8, "SCHEME": variant.scheme,
         "SORTED": variant.sorted_x},
        h_cols=H_BOX[variant.scheme],
    )  # fmt: skip


def compile_gate_up_kernel(
    fn: Any, w_box: list[int], block_m: int, num_warps: int, constexprs: dict[str, Any], h_cols: int = GROUP
) -> Any:
    """A Gluon gate/up kernel with ``kernels.gluon_gate_up``'s runtime arguments (weight TMA boxes of
    shape ``w_box``, ``block_m x h_cols`` h boxes) and the given ``constexprs`` (``NUM_STAGES`` among them),
    compiled for sm_90a without a GPU, specialized like a launch on DeepSeek-like shapes (pointers,
    N, K, x row stride 16-divisible; scale strides not)."""
    w_layout = gl.NVMMASharedLayout.get_default_for(w_box, gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([block_m, h_cols], gl.float8e4nv)
    x_name = fn.arg_names[0]
    x_type = "*fp8e4nv"
    if constexprs.get("SORTED"):  # x in the alignment's row order, by TMA
        x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
        x_type = f"tensordesc<fp8e4nv[{block_m},{GROUP}],{x_layout!r}>"
    signature = {
        x_name: x_type,
        "w_desc": f"tensordesc<fp8e4nv[{','.join(map(str, w_box))}],{w_layout!r}>",
        "h_desc": f"tensordesc<fp8e4nv[{block_m},{h_cols}],{h_layout!r}>",
        "xs_ptr": "*fp32", "ws_ptr": "*fp32", "hs_ptr": "*fp32",
        "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
        "N": "i32", "K": "i32", "num_slots": "i32", "top_k": "i32", "max_blocks": "i32",
        "stride_xm": "i32", "stride_xsm": "i32", "stride_wse": "i32", "stride_wsn": "i32",
        "stride_wsk": "i32", "stride_hsm": "i32",
        **dict.fromkeys(constexprs, "constexpr"),
    }  # fmt: skip
    aligned = (x_name, "xs_ptr", "ws_ptr", "hs_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr",
               "N", "K", "stride_xm")  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned if signature[n][0] == "*"
             or signature[n] == "i32"}  # fmt: skip
    source = GluonASTSource(fn, signature, constexprs, attrs)
    options = {"num_warps": num_warps, "num_stages": constexprs["NUM_STAGES"]}
    return triton.compile(source, target=TARGET, options=options)


def compile_triton_main(block_m: int, num_warps: int, num_stages: int) -> Any:
    """Main's Triton ``_gate_up_kernel`` (BLOCK_SCALE, TMA weights, 128x128) compiled for sm_90a,
    for the register/wait comparison."""
    from triton.compiler import ASTSource

    from kernels.fused_moe import _gate_up_kernel

    fn = _gate_up_kernel
    constexprs = {"BLOCK_M": block_m, "BLOCK_N": GROUP, "BLOCK_K": GROUP, "GROUP_M": 8, "EVEN_K": True,
                  "DOT_PRECISION": "tf32", "USE_TMA": True, "BLOCK_SCALE": True,
                  "SORTED_X": False, "PDL": False}  # fmt: skip
    types = {"x_ptr": "*fp8e4nv", "w1_ptr": f"tensordesc<fp8e4nv[{GROUP},{GROUP}]>", "h_ptr": "*fp8e4nv",
             "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
             "xs_ptr": "*fp32", "w1s_ptr": "*fp32", "hs_ptr": "*fp32"}  # fmt: skip
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in fn.arg_names}
    aligned = ("x_ptr", "h_ptr", "xs_ptr", "w1s_ptr", "hs_ptr", "N", "K", "stride_xm", "stride_hm")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})


def offline_reports(variants: list[Variant] | None = None, with_triton: bool = True) -> list[CompileReport]:
    """Compile every Gluon variant (kernel name :attr:`Variant.kernel_name`) and, with ``with_triton``, main's
    Triton kernel at the same BLOCK_M / warps / stages (kernel name ``triton-main``)."""
    reports = []
    seen: set[tuple[int, int, int, int]] = set()
    for v in variants or OFFLINE_VARIANTS:
        if HAS_GLUON:
            reports.append(_report(v.kernel_name, v.tile, lambda v=v: compile_gluon_moe(v)))
        else:
            reports.append(CompileReport("gluon", *v.tile, ok=False, error="no gluon"))
        if with_triton and v.tile not in seen:
            seen.add(v.tile)
            build = lambda v=v: compile_triton_main(v.block_m, v.num_warps, v.num_stages)  # noqa: E731
            reports.append(_report("triton-main", v.tile, build, None))
    return reports


# --------------------------------------------------------------------------------------------------
# GPU mode
# --------------------------------------------------------------------------------------------------
def expert_weights_fp8(
    num_local: int, rows: int, cols: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random expert weights ``(L, rows, cols)`` float8_e4m3fn and their ``(L, rows/128, cols/128)``
    float32 block scales, on ``gen``'s device, quantized one expert at a time (the fp32 temporaries
    of all experts at once would not fit beside the rest)."""
    from kernels.quant import quantize_fp8_block

    wq = torch.empty((num_local, rows, cols), dtype=torch.float8_e4m3fn, device=gen.device)
    ws = torch.empty((num_local, rows // GROUP, cols // GROUP), dtype=torch.float32, device=gen.device)
    for e in range(num_local):
        w = torch.randn(1, rows, cols, device=gen.device, generator=gen) * 0.02
        wq[e : e + 1], ws[e : e + 1] = quantize_fp8_block(w)
    return wq, ws


def fastest_main_tile(
    tiles: Any, launch: Callable[[Any], None], flops: float, label: str
) -> tuple[float, Any]:
    """Times main's Triton kernel at each of its fp8 ``tiles`` (``(block_n, block_k, warps, stages)``
    from ``kernels.tactics``, TMA on) through ``launch(tile)``, prints each, and returns ``(ms, tile)``
    of the fastest: the reference output and the speed-up baseline of the Gluon variants."""
    best: tuple[float, Any] | None = None
    for bn, bk, warps, stages in tiles:
        tile = GemmTile(bn, bk, 8, warps, stages, tma=True)
        ms = bench_ms(partial(launch, tile))
        print(f"  triton-main {label} {tile.name}: {ms * 1e3:.1f} us {flops / ms / 1e9:.0f} TFLOP/s")
        if best is None or ms < best[0]:
            best = (ms, tile)
    if best is None:
        raise ValueError(f"no main tiles to time for {label}")
    return best


def run_gpu(variants: list[Variant], num_tokens: int = 4096) -> None:
    """deepseek-r1 DEP8 (L=32 local experts of 256, H=7168, I=2048, top_k=8), balanced routing:
    for each variant, the Gluon kernel against main's Triton ``_launch_gate_up`` (same alignment,
    fp8 block scale, TMA weights, main's fp8 gate_up tiles for that block_m), then both timed.

    Expected agreement: both kernels compute the same fp32 sums per 128-deep K block in the same
    order; only FMA contraction and the wgmma's internal accumulation order may differ (~1e-6
    relative on gate/up). That can move a few values of h across an e4m3 rounding boundary (one code
    step is 2^-3 relative) or change a row's amax (then its whole group rescales by ~1e-7), so compare
    dequantized h in relative Frobenius norm (bound 1e-2, expected ~1e-4 or less) and report the
    fraction of differing e4m3 codes (expected well under 1%) and the max relative hs difference.
    """
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_gate_up
    from kernels.quant import dequantize_fp8_groups, quantize_fp8_groups, quantize_fp8_groups_sorted
    from kernels.tactics import _GATE_UP_FP8

    case = CASES["deepseek-r1-dep8"]
    dev = torch.device("cuda")
    num_local, k, h, i = case.local_experts, case.top_k, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(num_tokens, h, device=dev, generator=gen, dtype=torch.bfloat16)
    xq, xs = quantize_fp8_groups(x)
    w1q, w1s = expert_weights_fp8(num_local, 2 * i, h, gen)
    ids, _ = balanced_topk(num_tokens, case, 0, dev)
    rows = num_tokens * k  # every slot is local under DEP balanced routing
    flops = 2.0 * rows * h * 2 * i
    print(f"deepseek-r1-dep8 T={num_tokens}: L={num_local} H={h} I={i} top_k={k}, {rows} routed rows, "
          f"{flops / 1e12:.2f} TFLOP per call (2 * rows * H * 2I)")  # fmt: skip

    for block_m in dict.fromkeys(v.block_m for v in variants):  # the working point (first) first
        al = moe_align(ids, block_m, num_local, case.offset)
        # rows past num_padded are never written (sorted_ids there is uninitialized): compare real rows
        padded = int(al.num_padded.item())  # host sync: fine here
        real = (al.sorted_ids[:padded] < al.num_slots).nonzero().squeeze(1)
        hq_ref = torch.empty((al.max_padded, i), dtype=torch.float8_e4m3fn, device=dev)
        hs_ref = torch.empty((al.max_padded, i // GROUP), dtype=torch.float32, device=dev)

        def ref_call(
            tile: Any, al: Any = al, hq_ref: torch.Tensor = hq_ref, hs_ref: torch.Tensor = hs_ref
        ) -> None:
            _launch_gate_up(xq, w1q, hq_ref, al, tile, k, "tf32", scales=(xs, w1s, hs_ref))

        ref_ms, ref_tile = fastest_main_tile(_GATE_UP_FP8[block_m], ref_call, flops, f"bm{block_m}")
        # reference outputs from the fastest Triton tile
        _launch_gate_up(xq, w1q, hq_ref, al, ref_tile, k, "tf32", scales=(xs, w1s, hs_ref))
        torch.cuda.synchronize()
        codes_ref = hq_ref.view(torch.uint8)[real]  # index as bytes (fp8 indexing support varies)
        h_ref = dequantize_fp8_groups(codes_ref.view(torch.float8_e4m3fn), hs_ref[real])
        for v in (v for v in variants if v.block_m == block_m):
            tag = f"{v.kernel_name} bm{v.block_m} w{v.num_warps} s{v.num_stages}"
            hq = torch.empty_like(hq_ref)
            hs = torch.empty_like(hs_ref)
            xq_v, xs_v = quantize_fp8_groups_sorted(x, al, k) if v.sorted_x else (xq, xs)

            def call(
                v: Variant = v, al: Any = al, hq: torch.Tensor = hq, hs: torch.Tensor = hs,
                xq_v: torch.Tensor = xq_v, xs_v: torch.Tensor = xs_v,
            ) -> None:  # fmt: skip
                gluon_gate_up_fp8(xq_v, xs_v, w1q, w1s, al, v.block_m, v.num_warps, v.num_stages, top_k=k,
                                  out=(hq, hs), sorted_x=v.sorted_x)  # fmt: skip

            try:
                call()
                torch.cuda.synchronize()
                codes_out = hq.view(torch.uint8)[real]
                h_out = dequantize_fp8_groups(codes_out.view(torch.float8_e4m3fn), hs[real])
                rel = float((h_out - h_ref).norm() / h_ref.norm())
                codes = float((codes_out != codes_ref).float().mean())
                hs_rel = float(((hs[real] - hs_ref[real]).abs() / hs_ref[real].abs()).max())
                ms = bench_ms(call)
            except Exception as exc:  # report and go on, unless CUDA is gone
                print(f"  {tag}: FAILED {type(exc).__name__}: {str(exc)[:400]}")
                if is_cuda_fault(exc):
                    raise
                continue
            verdict = "ok" if rel < 1e-2 else "WRONG (bound 1e-2)"
            print(f"  {tag}: rel err (dequantized h) {rel:.2e} {verdict}; e4m3 codes differing "
                  f"{100 * codes:.3f}%; max rel hs diff {hs_rel:.1e}; {ms * 1e3:.1f} us "
                  f"{flops / ms / 1e9:.0f} TFLOP/s ({ref_ms / ms:.2f}x triton-main "
                  f"{ref_tile.name})")  # fmt: skip


def main() -> None:
    parser = mode_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per rank for --gpu")
    args = parser.parse_args()
    if wants_gpu(args):
        run_gpu(OFFLINE_VARIANTS + SORTED_VARIANTS, args.tokens)
    else:
        print_offline(offline_reports())


if __name__ == "__main__":
    main()
