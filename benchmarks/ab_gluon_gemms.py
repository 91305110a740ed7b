"""Same-process A/B of the fp8 layer's two Gluon GEMMs between two revisions of ``kernels/``.

    bash benchmarks/make_kernels_rev.sh main          # the old revision into .ab/kernels_old
    PYTHONPATH=.:.ab python3 benchmarks/ab_gluon_gemms.py [--cases A,B] [--tokens 4096,16384]
        [--gemms gate_up,down] [--stages 4,5] [--passes 3] [--json FILE]   # device, carry [".ab"]

For each case (``benchmarks.bench_fused_moe.CASES``, balanced routing) and token count, each
revision runs its own fp8 default tactic's tiles ("old", "new"; ``--stages`` adds the new revision's
tiles at other ring depths, "new-sS") on the same
inputs: x quantized as the layer quantizes it (into the alignment's order when the gate/up tile is
``sorted_x``), w1 and w2 random and block-quantized, and the down on the new gate/up's h. Each
prints whether the two outputs agree bit for bit (hq and hs; y's rows of real slots) and the time
of one launch: CUDA-graph replays (:class:`pytest_moetune.timing.CudaGraphTimer`, 7 rounds), old and
new alternating in ``--passes`` passes so that clock drift lands on both; the median over passes
of each pass's median, the new/old ratio and TFLOP/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import statistics
from collections.abc import Callable
from typing import Any

import kernels_old.gluon_down as old_down
import kernels_old.gluon_gate_up as old_gate_up
import torch

from benchmarks.bench_fused_moe import CASES, Case, balanced_topk
from benchmarks.points import each_point
from kernels import MoEProblem, default_tactic
from kernels.align import Alignment, moe_align
from kernels.gluon_down import launch_gluon_down
from kernels.gluon_gate_up import launch_gluon_gate_up
from kernels.quant import quantize_fp8_block, quantize_fp8_groups, quantize_fp8_groups_sorted
from kernels.tactics import GemmTile, gluon_misfit
from pytest_moetune.timing import CudaGraphTimer

GROUP = 128
old_tactics = importlib.import_module("kernels_old.tactics")  # the package's ``tactics`` is a function


@dataclasses.dataclass
class Point:
    """One case at one token count: inputs, alignment and the default tactic's tiles."""

    case: Case
    tokens: int
    xq: torch.Tensor  # (T, H) or (max_padded, H) e4m3
    xs: torch.Tensor  # (T, H/128) or (max_padded, H/128) fp32
    w1q: torch.Tensor  # (L, 2I, H) e4m3
    w1s: torch.Tensor  # (L, 2I/128, H/128) fp32
    w2q: torch.Tensor  # (L, H, I) e4m3
    w2s: torch.Tensor  # (L, H/128, I/128) fp32
    weights: torch.Tensor  # (T, k) fp32
    al: Alignment
    gate_up: GemmTile
    down: GemmTile
    old_gate_up: Any  # the old revision's default tiles (its GemmTile)
    old_down: Any


def make_point(case: Case, tokens: int, seed: int = 0) -> Point:
    """Random inputs of ``case`` at ``tokens`` per rank on the GPU, with each revision's default fp8
    tiles (both defaults must share block_m and the x layout: one alignment, one quantized x)."""
    dev = torch.device("cuda")
    torch.manual_seed(seed)
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    w1q, w1s = quantize_fp8_block((torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)).bfloat16())
    w2q, w2s = quantize_fp8_block((torch.randn(num_local, h, i, device=dev) / math.sqrt(i)).bfloat16())
    ids, weights = balanced_topk(tokens, case, 0, dev)
    tactic = default_tactic(MoEProblem(tokens, h, i, num_local, k, "float8_e4m3fn"), gluon=True)
    old = old_tactics.default_tactic(old_tactics.MoEProblem(tokens, h, i, num_local, k, "float8_e4m3fn"),
                                     gluon=True)  # fmt: skip
    if old.block_m != tactic.block_m or old.gate_up.sorted_x != tactic.gate_up.sorted_x:
        raise ValueError(f"{case.name} T={tokens}: the defaults need one alignment and x layout, got "
                         f"{old.name} (old) and {tactic.name} (new)")  # fmt: skip
    if not (tactic.gate_up.gluon and tactic.down.gluon):
        raise ValueError(f"{case.name} T={tokens}: the default fp8 tactic {tactic.name} is not all Gluon")
    al = moe_align(ids, tactic.block_m, num_local, case.offset)
    x = torch.randn(tokens, h, device=dev).bfloat16()
    sorted_x = tactic.gate_up.sorted_x
    xq, xs = quantize_fp8_groups_sorted(x, al, k) if sorted_x else quantize_fp8_groups(x)
    return Point(case, tokens, xq, xs, w1q, w1s, w2q, w2s, weights, al, tactic.gate_up, tactic.down,
                 old.gate_up, old.down)


def gate_up_launches(p: Point, tiles: dict[str, GemmTile]) -> tuple[dict[str, Callable[[], object]],
                                                                    Callable[[], bool]]:  # fmt: skip
    """Gate/up launches writing their own hq/hs: "old" (the old revision at its default tile), and
    per entry of ``tiles`` the new revision at that tile; and a check that all agree."""
    i = p.w1q.shape[1] // 2
    outs = {name: (torch.zeros((p.al.max_padded, i), dtype=torch.float8_e4m3fn, device=p.xq.device),
                   torch.zeros((p.al.max_padded, i // GROUP), device=p.xq.device))
            for name in ("old", *tiles)}  # fmt: skip
    k, sorted_x = p.case.top_k, p.gate_up.sorted_x
    launches: dict[str, Callable[[], object]] = {
        "old": lambda: old_gate_up.launch_gluon_gate_up(p.xq, p.xs, p.w1q, p.w1s, *outs["old"], p.al,
                                                        p.old_gate_up, k, sorted_x=sorted_x),
    }  # fmt: skip
    for name, tile in tiles.items():
        launches[name] = lambda name=name, tile=tile: launch_gluon_gate_up(
            p.xq, p.xs, p.w1q, p.w1s, *outs[name], p.al, tile, k, sorted_x=sorted_x)

    def same() -> bool:
        n = int(p.al.num_padded.item())
        hq_a, hs_a = outs["old"]
        return all(torch.equal(hq_a[:n].view(torch.uint8), hq_b[:n].view(torch.uint8))
                   and torch.equal(hs_a[:n], hs_b[:n]) for hq_b, hs_b in outs.values())  # fmt: skip

    return launches, same


def down_launches(p: Point, tiles: dict[str, GemmTile]) -> tuple[dict[str, Callable[[], object]],
                                                                 Callable[[], bool]]:  # fmt: skip
    """Down launches on the new gate/up's h, each into its own y: "old" at its default tile and the
    new revision at each of ``tiles``; and a check that the rows of real slots agree. The new
    revision writes y in the alignment's row order; so does an old one with the TMA-store epilogue
    (its kernel takes ``y_desc``, main since session 14), an older one one row per slot."""
    i, h = p.w1q.shape[1] // 2, p.w1q.shape[2]
    hq = torch.empty((p.al.max_padded, i), dtype=torch.float8_e4m3fn, device=p.xq.device)
    hs = torch.empty((p.al.max_padded, i // GROUP), device=p.xq.device)
    launch_gluon_gate_up(p.xq, p.xs, p.w1q, p.w1s, hq, hs, p.al, p.gate_up, p.case.top_k,
                         sorted_x=p.gate_up.sorted_x)  # fmt: skip
    ys = {name: torch.zeros((p.al.max_padded, h), dtype=torch.bfloat16, device=p.xq.device) for name in tiles}
    old_kernel = getattr(old_down, "_gluon_down_kernel", None) or old_down._gluon_down_fp8_kernel
    old_by_rows = "y_desc" in old_kernel.arg_names
    ys["old"] = torch.zeros((p.al.max_padded if old_by_rows else p.tokens * p.case.top_k, h),
                            dtype=torch.bfloat16, device=p.xq.device)  # fmt: skip
    launches: dict[str, Callable[[], object]] = {
        "old": lambda: old_down.launch_gluon_down(hq, hs, p.w2q, p.w2s, ys["old"], p.weights, p.al,
                                                  p.old_down),
    }  # fmt: skip
    for name, tile in tiles.items():
        launches[name] = lambda name=name, tile=tile: launch_gluon_down(
            hq, hs, p.w2q, p.w2s, ys[name], p.weights, p.al, tile)

    def same() -> bool:
        slots = p.al.sorted_ids[: int(p.al.num_padded.item())].long()
        rows = torch.nonzero(slots < p.al.num_slots).squeeze(1)  # padded rows of real slots
        old_bits = ys["old"][rows if old_by_rows else slots[rows]].view(torch.int16)
        return all(torch.equal(old_bits, ys[name][rows].view(torch.int16)) for name in tiles)

    return launches, same


GEMMS = {"gate_up": gate_up_launches, "down": down_launches}


def flops(p: Point, gemm: str) -> float:
    """Useful FLOPs of one launch (balanced routing sends every slot to a local expert): ``2 T k H 2I``
    for the gate/up, ``2 T k I H`` for the down."""
    i, h = p.w1q.shape[1] // 2, p.w1q.shape[2]
    return 2 * p.tokens * p.case.top_k * h * (2 * i if gemm == "gate_up" else i)


def variant_tiles(p: Point, gemm: str, stages: list[int]) -> tuple[dict[str, GemmTile], dict[str, str]]:
    """The new revision's tiles to time: "new" (the default's) and "new-sS" (the default's with S
    stages) where :func:`kernels.tactics.gluon_misfit` allows; and why the others were left out."""
    tile = p.gate_up if gemm == "gate_up" else p.down
    tiles, skipped = {"new": tile}, {}
    i, h = p.w1q.shape[1] // 2, p.w1q.shape[2]
    for s in stages:
        if s == tile.num_stages:
            continue
        other = dataclasses.replace(tile, num_stages=s)
        why = gluon_misfit(gemm, p.al.block_m, other, h, i)
        if why:
            skipped[f"new-s{s}"] = why
        else:
            tiles[f"new-s{s}"] = other
    return tiles, skipped


def compare(p: Point, gemm: str, passes: int, stages: list[int]) -> dict[str, Any]:
    """Bits and interleaved times of old and the new variants for one GEMM at one point."""
    tiles, skipped = variant_tiles(p, gemm, stages)
    launches, same = GEMMS[gemm](p, tiles)
    for launch in launches.values():
        launch()
    torch.cuda.synchronize()
    identical = same()
    timer = CudaGraphTimer(rounds=7, warmup_us=20_000)
    medians: dict[str, list[float]] = {name: [] for name in launches}
    for _ in range(passes):
        for name, launch in launches.items():
            medians[name].append(timer.measure([launch]).median_us)
    row: dict[str, Any] = {"case": p.case.name, "tokens": p.tokens, "gemm": gemm,
                           "tile": (p.gate_up if gemm == "gate_up" else p.down).name,
                           "bit_identical": identical, "skipped": skipped}  # fmt: skip
    for name, values in medians.items():
        us = statistics.median(values)
        row[f"{name}_us"] = round(us, 1)
        row[f"{name}_tflops"] = round(flops(p, gemm) / us / 1e6, 1)
        row[f"{name}_passes_us"] = [round(v, 1) for v in values]
    for name in tiles:
        row[f"{name}_over_old"] = round(row[f"{name}_us"] / row["old_us"], 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--gemms", default="gate_up,down", help="comma list of " + ",".join(GEMMS))
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--stages", default="", help="comma list: the new default tile at these ring depths too")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    gemms = args.gemms.split(",")
    stages = [int(v) for v in args.stages.split(",") if v]
    unknown = [g for g in gemms if g not in GEMMS]
    if unknown:
        raise SystemExit(f"unknown --gemms {unknown}: choose from {sorted(GEMMS)}")

    def measure(case: Case, tokens: int) -> list[dict[str, Any]]:
        p = make_point(case, tokens)
        return [compare(p, gemm, args.passes, stages) for gemm in gemms]

    each_point(args.cases, args.tokens, measure, args.json)


if __name__ == "__main__":
    main()
