"""The persistent warp-specialized Gluon gate/up (``kernels/gluon_gate_up_ws.py``): offline compile
report for sm_90a (CPU), and on a GPU its bits and time against the non-persistent halves kernel.

    PYTHONPATH=. python benchmarks/gluon_gate_up_ws.py --offline        # CPU: registers, spills, waits
    PYTHONPATH=. python benchmarks/gluon_gate_up_ws.py --gpu [--tokens 4096,16384] [--cases ...] \
        [--variants ws,ws-s5-g8]

GPU mode, per case and token count (balanced routing, x quantized into the alignment's order with
``kernels.quant.quantize_fp8_groups_sorted``): both kernels' hq/hs must be bit-identical (the same
fp32 operations in the same order per tile), then each is timed by CUDA-graph replay in interleaved
rounds (median), with TFLOP/s of the gate/up GEMM (2 R H 2I flops, R the routed rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
from typing import Any

import torch
import triton

from benchmarks.gluon_fp8_gemm import TARGET, _report
from kernels.gluon_support import HAS_GLUON
from kernels.tactics import GemmTile

if HAS_GLUON:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from kernels.gluon_down import LOADER_REGS, LOADER_WARPS
    from kernels.gluon_gate_up_ws import (
        GATHER_REGS,
        GATHER_REGS_FP8,
        _gluon_gate_up_ws_16bit_gather_kernel,
        _gluon_gate_up_ws_16bit_kernel,
        _gluon_gate_up_ws_gather_kernel,
        _gluon_gate_up_ws_kernel,
    )
    from kernels.gluon_gate_up_ws import HALF as _HALF

    HALF = _HALF.value

GROUP = 128
TILE = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True, sorted_x=True)
"""The default's sorted halves gate/up tile (block_m 128)."""


def compile_ws(num_stages: int = 4) -> Any:
    """The kernel compiled for sm_90a without a GPU, specialized like a launch on DeepSeek-like shapes
    (pointers, N, K and the xs/hs row strides 16-divisible; the w1s strides not)."""
    fn = _gluon_gate_up_ws_kernel
    x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    w_layout = gl.NVMMASharedLayout.get_default_for([2, HALF, GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([128, HALF], gl.float8e4nv)
    signature = {
        "x_desc": f"tensordesc<fp8e4nv[128,{GROUP}],{x_layout!r}>",
        "w_desc": f"tensordesc<fp8e4nv[2,{HALF},{GROUP}],{w_layout!r}>",
        "h_desc": f"tensordesc<fp8e4nv[128,{HALF}],{h_layout!r}>",
        "xs_ptr": "*fp32", "ws_ptr": "*fp32", "hs_ptr": "*fp32", "expert_ids_ptr": "*i32",
        "num_padded_ptr": "*i32", "N": "i32", "K": "i32", "stride_xsm": "i32", "stride_wse": "i32",
        "stride_wsn": "i32", "stride_wsk": "i32", "stride_hsm": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr", "LOADER_WARPS": "constexpr",
        "LOADER_REGS": "constexpr",
    }  # fmt: skip
    constexprs = {"NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": LOADER_REGS}  # fmt: skip
    aligned = ("xs_ptr", "ws_ptr", "hs_ptr", "expert_ids_ptr", "num_padded_ptr", "N", "K")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": 8, "num_stages": num_stages})


def compile_ws_16bit(num_stages: int = 3) -> Any:
    """The 16-bit (bf16) persistent gate/up compiled for sm_90a without a GPU: x box (128, 64), weight
    box (2, 128, 64), h box (128, 128); N and K 16-divisible."""
    fn = _gluon_gate_up_ws_16bit_kernel
    boxes = {"x_desc": [128, 64], "w_desc": [2, 128, 64], "h_desc": [128, 128]}
    signature = {name: f"tensordesc<bf16[{','.join(map(str, box))}],"
                       f"{gl.NVMMASharedLayout.get_default_for(box, gl.bfloat16)!r}>"
                 for name, box in boxes.items()}  # fmt: skip
    signature.update({"expert_ids_ptr": "*i32", "num_padded_ptr": "*i32", "N": "i32", "K": "i32",
                      "NUM_STAGES": "constexpr", "GROUP_M": "constexpr", "LOADER_WARPS": "constexpr",
                      "LOADER_REGS": "constexpr"})  # fmt: skip
    constexprs = {"NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": LOADER_REGS}  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in ("expert_ids_ptr", "num_padded_ptr",
                                                                            "N", "K")}  # fmt: skip
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": 8, "num_stages": num_stages})


def compile_ws_16bit_gather(num_stages: int = 3) -> Any:
    """The gathering 16-bit (bf16) persistent gate/up compiled for sm_90a without a GPU: x (T, H) by
    pointer with a 16-divisible row stride, top_k 8, weight box (2, 128, 64), h box (128, 128)."""
    fn = _gluon_gate_up_ws_16bit_gather_kernel
    boxes = {"w_desc": [2, 128, 64], "h_desc": [128, 128]}
    signature = {name: f"tensordesc<bf16[{','.join(map(str, box))}],"
                       f"{gl.NVMMASharedLayout.get_default_for(box, gl.bfloat16)!r}>"
                 for name, box in boxes.items()}  # fmt: skip
    signature.update({"x_ptr": "*bf16", "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32",
                      "num_padded_ptr": "*i32", "N": "i32", "K": "i32", "stride_xm": "i32",
                      "num_slots": "i32"})  # fmt: skip
    signature.update({name: "constexpr" for name in ("X_LAYOUT", "TOP_K", "NUM_STAGES", "GROUP_M",
                                                     "LOADER_WARPS", "LOADER_REGS")})  # fmt: skip
    constexprs = {"X_LAYOUT": gl.NVMMASharedLayout.get_default_for([128, 64], gl.bfloat16), "TOP_K": 8,
                  "NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": GATHER_REGS}  # fmt: skip
    aligned = ("x_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr", "N", "K", "stride_xm")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": 8, "num_stages": num_stages})


def compile_ws_gather(num_stages: int = 5) -> Any:
    """The gathering fp8 persistent gate/up compiled for sm_90a without a GPU: xq (T, H) e4m3 by
    pointer with a 16-divisible row stride, top_k 8, otherwise as :func:`compile_ws`."""
    fn = _gluon_gate_up_ws_gather_kernel
    w_layout = gl.NVMMASharedLayout.get_default_for([2, HALF, GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([128, HALF], gl.float8e4nv)
    signature = {
        "x_ptr": "*fp8e4nv",
        "w_desc": f"tensordesc<fp8e4nv[2,{HALF},{GROUP}],{w_layout!r}>",
        "h_desc": f"tensordesc<fp8e4nv[128,{HALF}],{h_layout!r}>",
        "xs_ptr": "*fp32", "ws_ptr": "*fp32", "hs_ptr": "*fp32", "sorted_ids_ptr": "*i32",
        "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32", "N": "i32", "K": "i32", "stride_xm": "i32",
        "num_slots": "i32", "stride_xsm": "i32", "stride_wse": "i32", "stride_wsn": "i32",
        "stride_wsk": "i32", "stride_hsm": "i32",
    }  # fmt: skip
    signature.update({name: "constexpr" for name in ("X_LAYOUT", "TOP_K", "NUM_STAGES", "GROUP_M",
                                                     "LOADER_WARPS", "LOADER_REGS")})  # fmt: skip
    constexprs = {"X_LAYOUT": gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2),
                  "TOP_K": 8, "NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": GATHER_REGS_FP8}  # fmt: skip
    aligned = ("x_ptr", "xs_ptr", "ws_ptr", "hs_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr",
               "N", "K", "stride_xm", "stride_xsm", "stride_hsm")  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": 8, "num_stages": num_stages})


def offline(stages: list[int], *, bits: int = 8, gather: bool = False) -> list[dict[str, Any]]:
    """One compile report per ring depth (registers, spills, wgmma waits, shared memory, K-loop SASS)
    of the fp8 kernel, or with ``bits=16`` of the 16-bit one (four m64n256k16 wgmmas per K block)."""
    if bits == 16:
        name, build = ("gluon-gate-up-ws-16bit-gather", compile_ws_16bit_gather) if gather else \
            ("gluon-gate-up-ws-16bit", compile_ws_16bit)
        return [dataclasses.asdict(_report(name, (128, 128, 8, s), lambda s=s: build(s), mma_per_iteration=4))
                for s in stages]  # fmt: skip
    name, build = ("gluon-gate-up-ws-gather", compile_ws_gather) if gather else \
        ("gluon-gate-up-ws", compile_ws)
    return [dataclasses.asdict(_report(name, (128, 128, 8, s), lambda s=s: build(s))) for s in stages]


def _launch(kind: str, xq: torch.Tensor, xs: torch.Tensor, w1q: torch.Tensor, w1s: torch.Tensor, al: Any,
            top_k: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """hq (max_padded, I) e4m3 and hs (max_padded, I/128) fp32 from the ``kind`` kernel ("halves":
    the non-persistent one at :data:`TILE`; "ws" or "ws-sS-gG": the persistent one at TILE, or with
    ring depth S and GROUP_M G), on x already in the alignment's order."""
    from kernels.gluon_gate_up import launch_gluon_gate_up
    from kernels.gluon_gate_up_ws import launch_gluon_gate_up_ws

    i = w1q.shape[1] // 2
    hq = torch.zeros((al.max_padded, i), dtype=torch.float8_e4m3fn, device=xq.device)
    hs = torch.zeros((al.max_padded, i // GROUP), dtype=torch.float32, device=xq.device)
    if kind.startswith("ws"):
        tile = TILE
        if "-" in kind:
            stages, group_m = (int(part[1:]) for part in kind.split("-")[1:])
            tile = dataclasses.replace(TILE, num_stages=stages, group_m=group_m)
        launch_gluon_gate_up_ws(xq, xs, w1q, w1s, hq, hs, al, tile, top_k)
    else:
        launch_gluon_gate_up(xq, xs, w1q, w1s, hq, hs, al, TILE, top_k, sorted_x=True)
    return hq, hs


def run_gpu(case_names: list[str], tokens: list[int], variants: list[str], rounds: int = 7,
            reps: int = 5) -> list[dict[str, Any]]:  # fmt: skip
    """Bits and time of the persistent kernel (``variants``, see :func:`_launch`) against the halves
    kernel at each point: each kernel ``reps`` times in one CUDA graph, the graphs replayed in
    ``rounds`` interleaved rounds."""
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.quant import quantize_fp8_block, quantize_fp8_groups_sorted

    dev = torch.device("cuda")
    out = []
    kinds = ("halves", *variants)
    for name in case_names:
        case = CASES[name]
        h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
        w1 = (torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)).to(torch.bfloat16)
        w1q, w1s = quantize_fp8_block(w1)
        del w1
        for t in tokens:
            x = torch.randn(t, h, device=dev).to(torch.bfloat16)
            ids, _ = balanced_topk(t, case, 0, dev)
            al = moe_align(ids, 128, num_local, case.offset)
            xq, xs = quantize_fp8_groups_sorted(x, al, k)
            n = int(al.num_padded.item())
            hq_a, hs_a = _launch("halves", xq, xs, w1q, w1s, al, k)
            same = True
            for kind in variants:
                hq_b, hs_b = _launch(kind, xq, xs, w1q, w1s, al, k)
                same = same and torch.equal(hq_a[:n].view(torch.uint8), hq_b[:n].view(torch.uint8))
                same = same and torch.equal(hs_a[:n], hs_b[:n])
            graphs = {}
            for kind in kinds:
                _launch(kind, xq, xs, w1q, w1s, al, k)
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(reps):
                        _launch(kind, xq, xs, w1q, w1s, al, k)
                graphs[kind] = g
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind, g in graphs.items():
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    g.replay()
                    end.record()
                    torch.cuda.synchronize()
                    times[kind].append(start.elapsed_time(end) * 1000 / reps)
            flops = 2 * t * k * h * 2 * i
            row: dict[str, Any] = {"case": name, "tokens": t, "bit_identical": same}
            for kind, v in times.items():
                med = statistics.median(v)
                row[f"{kind}_us"] = round(med, 1)
                row[f"{kind}_tflops"] = round(flops / med / 1e6, 1)
            for kind in variants:
                row[f"{kind}_over_halves"] = round(row[f"{kind}_us"] / row["halves_us"], 3)
            print(json.dumps(row), flush=True)
            out.append(row)
            del graphs
            torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--offline", action="store_true")
    mode.add_argument("--gpu", action="store_true")
    ap.add_argument("--stages", default="4", help="offline: comma list of ring depths")
    ap.add_argument("--cases", default="deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,"
                    "qwen3-30b-a3b-ep1")
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--variants", default="ws", help="gpu: comma list of ws, ws-sS-gG (ring depth, GROUP_M)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.offline:
        if not HAS_GLUON:
            raise SystemExit("no Gluon in this Triton")
        os.environ.pop("TRITON_INTERPRET", None)
        res = offline([int(s) for s in args.stages.split(",")])
    else:
        tokens = [int(t) for t in args.tokens.split(",")]
        res = run_gpu(args.cases.split(","), tokens, args.variants.split(","))
    text = json.dumps(res, indent=1)
    print(text if args.offline else "")
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
