#!/usr/bin/env python3
"""Benchmark of the Triton fused MoE layer against the torch._grouped_mm peer and the roofline.

Run on a CUDA GPU from the repo root::

    PYTHONPATH=. python3 benchmarks/bench_fused_moe.py --json $OUT/bench.json

Same run: ceilings (device copy bandwidth counting read + write, dense bf16 8192^3 matmul rate),
then for each case and tokens-per-rank T with balanced routing (every local expert gets
T*k/L rows +-1, distinct experts per row, all slots in the rank's shard): the default tactic, the
best tactic of a sweep over ``kernels.tactics(problem)`` (coordinate-wise: per block_m, the
gate_up tiles with a fixed down tile, then the down tiles with the best gate_up), the peer layer
(``kernels.grouped_mm_moe``) and the roofline ``max(bytes / copy_bw, flops / matmul_rate)`` with
``flops = 2*R*H*2I + 2*R*I*H`` and ``bytes`` = weights of experts with >= 1 row + x + out.

The matmul rates above are timed in 20 ms rounds that alternate with the copy, a low-power kernel,
so the card runs them near its boost clock: about 1.17x what it sustains at its power limit, where
the large-T layers run (BENCHMARKS.md, run 63). So the run also measures the sustained rates, the
plugin's ceilings (``pytest_moetune.ceilings.measure_ceilings``: 2 s of matmuls first), and every
row gives its roofline fraction against both ("% roofline, sustained"; only the matmul rates
differ, the copy rate is the start-of-run one in both). With ``--in-round`` every point also times
the same dense matmuls as variants of its own interleaved rounds (``dense_mm``, ``dense_mm_fp8``)
and gives the fraction at those rates ("% roofline, in-round"). A diagnostic, off by default: the
dense matmuls run at full power for their share of every round and heat the card, so the layers
run slower beside them (the bf16 layers 1.05-1.09x their time at T >= 4096 in BENCHMARKS.md's
run 104), and every other column of such a run reads accordingly.

The best tactic is chosen in two steps: the sweep ranks tactics (3 short rounds each); the
default and the sweep's two fastest are then timed in the same interleaved rounds as the peer and
the fastest of them is reported as "best" (so sweep-time drift cannot crown a slower tactic).

Timing: each variant is captured in a CUDA graph of n back-to-back layer calls (n sized to ~20 ms,
cycling over 4 routing variants with shifted experts so small-T weights do not sit in L2) and timed
by CUDA events around a replay; a round is one replay; rounds of the variants of one point are
interleaved, each pass over them starting one variant later than the one before (so no variant
always follows the same one, e.g. a dense matmul at full power); the reported time is the median
round / n. Runs 101-102 (BENCHMARKS.md) kept one order, the dense matmuls just before the bf16
default.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import triton

from kernels import (
    MoEProblem,
    Tactic,
    default_tactic,
    fused_moe,
    fused_moe_fp8,
    grouped_mm_moe,
    quantize_fp8_block,
    tactics,
)
from kernels.align import Alignment
from kernels.fused_moe import launch_down_rows
from kernels.gluon_support import gluon_unready
from kernels.tactics import GemmTile, block_m_choices
from pytest_moetune.ceilings import measure_ceilings as measure_sustained_ceilings

GLUON = gluon_unready() is None
"""The Gluon tiles (fp8 GEMMs, the 16-bit down) join the sweeps and defaults where this GPU runs them
(Hopper)."""


@dataclass(frozen=True)
class Case:
    name: str
    num_experts: int
    top_k: int
    hidden: int
    intermediate: int
    ep_size: int

    @property
    def local_experts(self) -> int:
        return self.num_experts // self.ep_size

    @property
    def offset(self) -> int:
        # the last rank of the EP group, so the shard offset is exercised
        return (self.ep_size - 1) * self.local_experts


CASES = {
    c.name: c
    for c in (
        Case("qwen3-235b-a22b-dep2", 128, 8, 4096, 1536, 2),
        Case("deepseek-r1-dep8", 256, 8, 7168, 2048, 8),
        Case("mixtral-8x7b-ep1", 8, 2, 4096, 14336, 1),
        Case("qwen3-30b-a3b-ep1", 128, 8, 2048, 768, 1),
    )
}
TOKENS = (1, 16, 64, 256, 1024, 4096, 16384)
VARIANTS = 4


def balanced_topk(
    num_tokens: int, case: Case, shift: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """DEP balanced routing: slot s = t*k + j goes to local expert (s + shift) % L (distinct per
    row since k <= L; each expert gets T*k/L rows +-1); weights are a random softmax."""
    k, num_local = case.top_k, case.local_experts
    assert k <= num_local
    slots = torch.arange(num_tokens * k, device=device).view(num_tokens, k)
    ids = ((slots + shift) % num_local + case.offset).to(torch.int32)
    gen = torch.Generator(device=device).manual_seed(1234 + shift)
    weights = torch.softmax(torch.randn(num_tokens, k, device=device, generator=gen), dim=-1)
    return ids.contiguous(), weights.float().contiguous()


def graph_of(calls: list[Callable[[], object]], n: int) -> torch.cuda.CUDAGraph:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for c in calls:
            c()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(n):
            calls[i % len(calls)]()
    g.replay()
    torch.cuda.synchronize()
    return g


def replay_us(g: torch.cuda.CUDAGraph, n: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    g.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / n


def eager_us(calls: list[Callable[[], object]]) -> float:
    for c in calls:
        c()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for c in calls:
        c()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / len(calls)


class Timed:
    """One variant at one point: a graph of n calls, timed round by round."""

    def __init__(self, calls: list[Callable[[], object]], target_us: float) -> None:
        est = eager_us(calls)
        self.n = int(min(256, max(2, math.ceil(target_us / max(est, 1.0)))))
        self.graph = graph_of(calls, self.n)
        self.rounds: list[float] = []

    def round(self) -> None:
        self.rounds.append(replay_us(self.graph, self.n))

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)


DENSE_SIZE = 8192
"""The dense matmuls behind the roofline's rates are DENSE_SIZE^3."""


@functools.cache
def dense_matmuls() -> dict[str, Callable[[], object]]:
    """The dense DENSE_SIZE^3 matmuls the roofline's rates come from, on random operands made once
    (bf16, ~0.4 GB with their e4m3 copies): "bf16" (``torch.mm``, bf16 out) and "fp8"
    (``torch._scaled_mm`` on e4m3, unit scales, bf16 out)."""
    a = torch.randn(DENSE_SIZE, DENSE_SIZE, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(DENSE_SIZE, DENSE_SIZE, device="cuda", dtype=torch.bfloat16)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    one = torch.ones((), device="cuda", dtype=torch.float32)
    return {"bf16": lambda: torch.mm(a, b),
            "fp8": lambda: torch._scaled_mm(a8, b8.t(), one, one, out_dtype=torch.bfloat16)}  # fmt: skip


def in_round_ceilings(
    ceilings: dict[str, float], res: dict[str, dict[str, object]]
) -> dict[str, float] | None:
    """``ceilings`` with the matmul rates of one point's own rounds (its ``dense_mm`` and, at fp8
    points, ``dense_mm_fp8`` medians in ``res``, :func:`run_point`'s results), the copy rate kept;
    ``None`` where the point timed no ``dense_mm``. Without ``dense_mm_fp8`` the result has no fp8
    rate (never the start-of-run one under the in-round name)."""
    if "dense_mm" not in res:
        return None
    flops = 2 * DENSE_SIZE**3
    rates = {"matmul_flops_per_s": "dense_mm", "fp8_matmul_flops_per_s": "dense_mm_fp8"}
    out = {key: rate for key, rate in ceilings.items() if key != "fp8_matmul_flops_per_s"}
    out.update({key: flops / (float(res[name]["median_us"]) * 1e-6)  # type: ignore[arg-type]
                for key, name in rates.items() if name in res})  # fmt: skip
    return out


def measure_ceilings(rounds: int) -> dict[str, object]:
    """Copy bandwidth (read + write bytes) and dense bf16 matmul rate, by graph replay.

    The copy is measured two ways, a ``copy_`` (a memcpy node in the graph) and an elementwise
    kernel (``torch.neg`` into another buffer, 16-byte vector loads/stores); the faster one is the
    ceiling (the harsher roofline).
    """
    nbytes = 1 << 30
    src = torch.randn(nbytes // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    copies = {
        "memcpy": Timed([lambda: dst.copy_(src)], 20_000),
        "kernel": Timed([lambda: torch.neg(src, out=dst)], 20_000),
    }
    size = DENSE_SIZE
    mm = Timed([dense_matmuls()["bf16"]], 20_000)
    for _ in range(rounds):
        for tm in copies.values():
            tm.round()
        mm.round()
    copy_bw = {k: 2 * nbytes / (tm.median * 1e-6) for k, tm in copies.items()}
    mm_rate = 2 * size**3 / (mm.median * 1e-6)
    res: dict[str, object] = {
        "copy_bytes_per_s": max(copy_bw.values()),
        "copy_bytes_per_s_by_method": copy_bw,
        "copy_bytes": 2 * nbytes,
        "copy_rounds_us": {k: tm.rounds for k, tm in copies.items()},
        "matmul_flops_per_s": mm_rate,
        "matmul_size": size,
        "matmul_rounds_us": mm.rounds,
    }
    # dense fp8 (e4m3) matmul through torch._scaled_mm, bf16 out: the fp8 roofline's rate
    mm8 = Timed([dense_matmuls()["fp8"]], 20_000)
    for _ in range(rounds):
        mm8.round()
    res["fp8_matmul_flops_per_s"] = 2 * size**3 / (mm8.median * 1e-6)
    res["fp8_matmul_rounds_us"] = mm8.rounds
    sustained = measure_sustained_ceilings(rounds=rounds)
    res["sustained"] = {
        "matmul_flops_per_s": sustained.matmul_flops_per_s,
        "fp8_matmul_flops_per_s": sustained.fp8_matmul_flops_per_s,
        "matmul_warmup_s": sustained.matmul_warmup_s,
    }
    return res


def sustained_ceilings(ceilings: dict[str, object]) -> dict[str, float] | None:
    """``ceilings`` with the sustained matmul rates in place of the burst ones (the copy rate kept),
    or ``None`` for a report from before they were measured."""
    sustained = ceilings.get("sustained")
    if not isinstance(sustained, dict):
        return None
    return {**ceilings, "matmul_flops_per_s": sustained["matmul_flops_per_s"],  # type: ignore[dict-item]
            "fp8_matmul_flops_per_s": sustained["fp8_matmul_flops_per_s"]}  # fmt: skip


def time_prefixes(
    upto: Callable[[int], object], names: tuple[str, ...], rounds: int, target: float
) -> dict[str, float]:
    """Median us of ``upto(s)`` (the layer's first ``s + 1`` stages) for each stage name, each
    prefix its own graph, the rounds interleaved."""
    timers = {name: Timed([lambda s=s: upto(s)], target) for s, name in enumerate(names)}
    for _ in range(rounds):
        for tm in timers.values():
            tm.round()
    return {name: tm.median for name, tm in timers.items()}


def _combined(y: torch.Tensor, ids: torch.Tensor, al: Alignment, tile: GemmTile, offset: int,
              num_local: int) -> torch.Tensor:  # fmt: skip
    """The layer's combine of ``kernels.fused_moe.launch_down_rows``'s y into a fresh ``(T, H)`` out."""
    from kernels.fused_moe import launch_combine

    out = torch.empty((ids.shape[0], y.shape[1]), dtype=y.dtype, device=y.device)
    launch_combine(y, ids, out, offset, num_local, slot_rows=al.slot_rows if tile.gluon else None)
    return out


def breakdown(case: Case, num_tokens: int, t: Tactic, rounds: int, target: float) -> dict[str, float]:
    """Median us of the layer's stage prefixes (align; +x's rows copied into the alignment's order,
    for a ``sorted_x`` gate/up tile, else nothing; +gate_up; +down; +combine), one graph each, in
    the order ``kernels.fused_moe`` runs them with tactic ``t``; differences give each stage's
    share. The full prefix must give the layer's bits (``RuntimeError`` otherwise)."""
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_gate_up
    from kernels.row_gather import gather_rows_sorted

    dev = torch.device("cuda")
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    w1 = (torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)).to(torch.bfloat16)
    w2 = (torch.randn(num_local, h, i, device=dev) / math.sqrt(i)).to(torch.bfloat16)
    x = torch.randn(num_tokens, h, device=dev).to(torch.bfloat16)
    ids, wts = balanced_topk(num_tokens, case, 0, dev)

    def upto(stage: int) -> torch.Tensor | None:
        al = moe_align(ids, t.block_m, num_local, case.offset)
        if stage < 1:
            return None
        x_rows = gather_rows_sorted(x, al, k)[0] if t.gate_up.sorted_x else x
        if stage < 2:
            return None
        hb = torch.empty((al.max_padded, i), dtype=x.dtype, device=dev)
        _launch_gate_up(x_rows, w1, hb, al, t.gate_up, k, "tf32")
        if stage < 3:
            return None
        y = launch_down_rows(hb, w2, wts, al, t.down, x.dtype, "tf32")
        if stage < 4:
            return None
        return _combined(y, ids, al, t.down, case.offset, num_local)

    layer = fused_moe(x, w1, w2, ids, wts, local_expert_offset=case.offset, tactic=t)
    if not torch.equal(upto(4), layer):
        raise RuntimeError(f"breakdown of {t.name}: its stages do not give fused_moe's output")
    return time_prefixes(upto, ("align", "+sort_x", "+gate_up", "+down", "+combine"), rounds, target)


def breakdown_fp8(
    case: Case, num_tokens: int, t: Tactic, weights: tuple[torch.Tensor, ...], rounds: int, target: float
) -> dict[str, float]:
    """Median us of the fp8 layer's stage prefixes (align; +x quantization, into the alignment's row
    order for a ``sorted_x`` gate/up tile; +gate_up; +down; +combine), one graph each, in the order
    ``kernels.quant.fused_moe_fp8`` runs them with tactic ``t`` (Gluon or Triton tiles); ``weights``
    = (w1q, w1s, w2q, w2s). Differences give each stage's share: what the fp8 layer spends outside
    its two GEMMs. The full prefix must give the layer's bits (``RuntimeError`` otherwise): the
    stages are the layer, not a copy that drifted from it."""
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_gate_up
    from kernels.quant import quantize_fp8_groups, quantize_fp8_groups_sorted

    if GLUON:
        from kernels.gluon_gate_up import launch_gluon_gate_up
    dev = torch.device("cuda")
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    w1q, w1s, w2q, w2s = weights
    x = torch.randn(num_tokens, h, device=dev).to(torch.bfloat16)
    ids, wts = balanced_topk(num_tokens, case, 0, dev)

    sorted_x = t.gate_up.sorted_x

    def upto(stage: int) -> torch.Tensor | None:
        al = moe_align(ids, t.block_m, num_local, case.offset)
        if stage < 1:
            return None
        xq, xs = quantize_fp8_groups_sorted(x, al, k) if sorted_x else quantize_fp8_groups(x)
        if stage < 2:
            return None
        hq = torch.empty((al.max_padded, i), dtype=torch.float8_e4m3fn, device=dev)
        hs = torch.empty((al.max_padded, i // 128), dtype=torch.float32, device=dev)
        if t.gate_up.gluon:
            launch_gluon_gate_up(xq, xs, w1q, w1s, hq, hs, al, t.gate_up, k, sorted_x=sorted_x)
        else:
            _launch_gate_up(xq, w1q, hq, al, t.gate_up, k, "tf32", scales=(xs, w1s, hs))
        if stage < 3:
            return None
        y = launch_down_rows(hq, w2q, wts, al, t.down, x.dtype, "tf32", scales=(hs, w2s))
        if stage < 4:
            return None
        return _combined(y, ids, al, t.down, case.offset, num_local)

    layer = fused_moe_fp8(x, *weights, ids, wts, local_expert_offset=case.offset, tactic=t)
    if not torch.equal(upto(4), layer):
        raise RuntimeError(f"fp8 breakdown of {t.name}: its stages do not give fused_moe_fp8's output")
    return time_prefixes(upto, ("align", "+quant_x", "+gate_up", "+down", "+combine"), rounds, target)


def gluon_gate_up_twins(problem: MoEProblem, dflt: Tactic, gluon: bool) -> list[Tactic]:
    """``dflt`` with each other Gluon gate/up of ``problem``'s space at its block_m (the persistent
    16-bit ones for bf16/fp16: gathering and ``sorted_x``, 3 and 4 stages), in the space's order."""
    gate_ups = dict.fromkeys(t.gate_up for t in tactics(problem, gluon=gluon)
                             if t.gate_up.gluon and t.block_m == dflt.block_m)  # fmt: skip
    return [replace(dflt, gate_up=g) for g in gate_ups if g != dflt.gate_up]


def roofline_us(
    case: Case, num_tokens: int, ceilings: dict[str, float], fp8: bool = False
) -> dict[str, float]:
    """bf16: weights 2 B/elem and the bf16 matmul rate; fp8: 1 B/elem (+ fp32 block scales) and
    the fp8 matmul rate. Activations x and out are bf16 either way."""
    rows = num_tokens * case.top_k
    h, i = case.hidden, case.intermediate
    active = min(case.local_experts, rows)
    flops = 2 * rows * h * 2 * i + 2 * rows * i * h
    wbytes = 1 + 4 / (128 * 128) if fp8 else 2
    nbytes = int(active * 3 * h * i * wbytes) + 2 * num_tokens * h * 2
    t_mem = nbytes / ceilings["copy_bytes_per_s"] * 1e6
    rate = ceilings["fp8_matmul_flops_per_s"] if fp8 else ceilings["matmul_flops_per_s"]
    t_mm = flops / rate * 1e6
    return {
        "rows": rows,
        "active_experts": active,
        "flops": flops,
        "bytes": nbytes,
        "mem_us": t_mem,
        "mm_us": t_mm,
        "roofline_us": max(t_mem, t_mm),
    }


def coordinate_sweep(problem: MoEProblem, dflt: Tactic, time_of: Callable[[Tactic], float]) -> list[Tactic]:
    """Per block_m: the gate_up tiles with a fixed down tile, then the down tiles with the best
    gate_up. Returns the timed tactics, fastest first (the default is always timed too)."""
    space = tactics(problem, gluon=GLUON)
    timed: dict[Tactic, float] = {dflt: time_of(dflt)}
    for bm in block_m_choices(problem, gluon=GLUON):
        in_bm = [t for t in space if t.block_m == bm]
        gus = list(dict.fromkeys(t.gate_up for t in in_bm))
        dns = list(dict.fromkeys(t.down for t in in_bm))
        if not gus:
            continue
        start_dn = dflt.down if dflt.block_m == bm and dflt.down in dns else dns[0]
        for g in gus:
            t = Tactic(bm, g, start_dn)
            timed.setdefault(t, time_of(t))
        best_gu = min((t for t in timed if t.block_m == bm), key=timed.__getitem__).gate_up
        for d in dns:
            t = Tactic(bm, best_gu, d)
            timed.setdefault(t, time_of(t))
    return sorted(timed, key=timed.__getitem__)


FINALISTS = 2  # sweep's fastest re-timed with the default in the interleaved rounds


def run_point(
    case: Case, num_tokens: int, ceilings: dict[str, float], args: argparse.Namespace
) -> dict[str, object]:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local = case.hidden, case.intermediate, case.local_experts
    dt = torch.bfloat16
    w1f = torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)
    w2f = torch.randn(num_local, h, i, device=dev) / math.sqrt(i)
    w1, w2 = w1f.to(dt), w2f.to(dt)
    do_fp8 = num_tokens in args.fp8_tokens
    if do_fp8:
        w1q, w1s = quantize_fp8_block(w1f)
        w2q, w2s = quantize_fp8_block(w2f)
    del w1f, w2f
    torch.cuda.empty_cache()
    xs = [torch.randn(num_tokens, h, device=dev).to(dt) for _ in range(VARIANTS)]
    routes = [balanced_topk(num_tokens, case, v * num_tokens * case.top_k, dev) for v in range(VARIANTS)]
    off = case.offset
    target = args.target_ms * 1000.0

    def bf16_calls(t: Tactic) -> list[Callable[[], object]]:
        return [
            (lambda v=v: fused_moe(xs[v], w1, w2, *routes[v], local_expert_offset=off, tactic=t))
            for v in range(VARIANTS)
        ]

    def fp8_calls(t: Tactic) -> list[Callable[[], object]]:
        return [
            (
                lambda v=v: fused_moe_fp8(
                    xs[v], w1q, w1s, w2q, w2s, *routes[v], local_expert_offset=off, tactic=t
                )
            )
            for v in range(VARIANTS)
        ]

    peer_calls = [
        (lambda v=v: grouped_mm_moe(xs[v], w1, w2, *routes[v], local_expert_offset=off))
        for v in range(VARIANTS)
    ]
    peer_out = peer_calls[0]().float()
    peer_norm = peer_out.norm().item()

    def err_vs_peer(calls: list[Callable[[], object]]) -> float:
        return (calls[0]().float() - peer_out).norm().item() / peer_norm

    def sweeper(
        make: Callable[[Tactic], list[Callable[[], object]]], max_err: float, log: list[dict[str, object]]
    ) -> Callable[[Tactic], float]:
        def time_of(t: Tactic) -> float:
            try:
                tm = Timed(make(t), target / 2)
                for _ in range(args.sweep_rounds):
                    tm.round()
                med = tm.median
                del tm
                err = err_vs_peer(make(t))
            except Exception as exc:  # a tile that does not fit: record and skip
                log.append({"tactic": t.to_dict(), "error": f"{type(exc).__name__}: {exc}"[:300]})
                return math.inf
            log.append({"tactic": t.to_dict(), "median_us": med, "rel_err_vs_peer": err})
            return med if err < max_err else math.inf  # wrong results never win

        return time_of

    problem = MoEProblem(num_tokens, h, i, num_local, case.top_k, "bfloat16")
    dflt = default_tactic(problem, gluon=GLUON)
    sweep: list[dict[str, object]] = []
    ranked = coordinate_sweep(problem, dflt, sweeper(bf16_calls, 2e-2, sweep)) if args.sweep else [dflt]
    finalists = {"default": dflt}
    for n, t in enumerate(x for x in ranked if x != dflt):
        if n < FINALISTS:
            finalists[f"cand{n}"] = t
    if args.sorted_twin and dflt.gate_up.tma:  # the default with the other x layout, same rounds
        twin = replace(dflt, gate_up=replace(dflt.gate_up, sorted_x=not dflt.gate_up.sorted_x))
        if twin not in finalists.values():
            finalists["sorted_twin"] = twin
    if args.down_twin and dflt.down.gluon:  # the default with Triton's down, same rounds
        twin = default_tactic(problem)
        if twin not in finalists.values():
            finalists["down_twin"] = twin
    for twin in gluon_gate_up_twins(problem, dflt, GLUON) if args.gate_up_twin else ():
        if twin not in finalists.values():
            finalists[f"gate_up_twin_{twin.gate_up.name}"] = twin
    variants = {name: Timed(bf16_calls(t), target) for name, t in finalists.items()}
    variants["peer"] = Timed(peer_calls, target)
    sweep8: list[dict[str, object]] = []
    finalists8: dict[str, Tactic] = {}
    if do_fp8:
        p8 = MoEProblem(num_tokens, h, i, num_local, case.top_k, "float8_e4m3fn")
        d8 = default_tactic(p8, gluon=GLUON)
        # fp8 against the bf16 peer: quantization of x, weights and h, ~5% relative
        ranked8 = coordinate_sweep(p8, d8, sweeper(fp8_calls, 0.1, sweep8)) if args.sweep else [d8]
        finalists8 = {"fp8_default": d8}
        for n, t in enumerate(x for x in ranked8 if x != d8):
            if n < FINALISTS:
                finalists8[f"fp8_cand{n}"] = t
        if args.sorted_twin and d8.gate_up.tma:  # the default with the other x layout, same rounds
            twin = replace(d8, gate_up=replace(d8.gate_up, sorted_x=not d8.gate_up.sorted_x))
            if twin not in finalists8.values():
                finalists8["fp8_sorted_twin"] = twin
        variants.update({name: Timed(fp8_calls(t), target) for name, t in finalists8.items()})
    if args.in_round:  # the roofline's dense matmuls again, in this point's rounds (module docstring)
        variants["dense_mm"] = Timed([dense_matmuls()["bf16"]], target)
        if do_fp8:
            variants["dense_mm_fp8"] = Timed([dense_matmuls()["fp8"]], target)
    torch.cuda.empty_cache()
    names = list(variants)
    for r in range(args.rounds):  # each round starts one variant later: none always follows the same one
        for name in names[r % len(names) :] + names[: r % len(names)]:
            variants[name].round()
    res = {
        name: {"median_us": tm.median, "rounds_us": tm.rounds, "calls_per_replay": tm.n}
        for name, tm in variants.items()
    }
    # the best tactic: the fastest finalist in the interleaved rounds (the default included)
    best_name = min(finalists, key=lambda nm: res[nm]["median_us"])
    best = finalists[best_name]
    res["best"] = {**res[best_name], "finalist": best_name}
    if do_fp8:
        b8_name = min(finalists8, key=lambda nm: res[nm]["median_us"])
        b8 = finalists8[b8_name]
        res["fp8_best"] = {**res[b8_name], "finalist": b8_name}
    sustained = sustained_ceilings(ceilings)
    in_round = in_round_ceilings(ceilings, res)

    def sustained_floor(fp8: bool) -> float | None:
        return None if sustained is None else roofline_us(case, num_tokens, sustained, fp8)["roofline_us"]

    def in_round_floor(fp8: bool) -> float | None:
        return None if in_round is None else roofline_us(case, num_tokens, in_round, fp8)["roofline_us"]

    point: dict[str, object] = {
        "case": case.name,
        "tokens": num_tokens,
        **roofline_us(case, num_tokens, ceilings),
        "roofline_sustained_us": sustained_floor(False),
        "roofline_in_round_us": in_round_floor(False),
        "default_tactic": dflt.to_dict(),
        "best_tactic": best.to_dict(),
        "finalists": {k: t.to_dict() for k, t in finalists.items()},
        "default_rel_err_vs_peer": err_vs_peer(bf16_calls(dflt)),
        "best_rel_err_vs_peer": err_vs_peer(bf16_calls(best)),
        "results": res,
        "sweep": sweep,
    }
    if do_fp8:
        point["fp8"] = {
            "roofline": roofline_us(case, num_tokens, ceilings, fp8=True),
            "roofline_sustained_us": sustained_floor(True),
            "roofline_in_round_us": in_round_floor(True),
            "default_tactic": d8.to_dict(),
            "best_tactic": b8.to_dict(),
            "finalists": {k: t.to_dict() for k, t in finalists8.items()},
            "best_rel_err_vs_peer": err_vs_peer(fp8_calls(b8)),
            "sweep": sweep8,
        }
    for twin_name in (name for name in res if "_twin" in name):
        default_name = "fp8_default" if twin_name.startswith("fp8_") else "default"
        twin_us, default_us = res[twin_name]["median_us"], res[default_name]["median_us"]
        print(f"  {twin_name}: {twin_us:.1f} us, {twin_us / default_us:.3f}x the default's "
              f"{default_us:.1f} us (same rounds)", flush=True)  # fmt: skip
    del variants
    torch.cuda.empty_cache()
    if args.breakdown:
        point["breakdown_best_us"] = breakdown(case, num_tokens, best, args.rounds, target)
        print(
            "  breakdown (prefix medians, us):",
            {k: round(v, 1) for k, v in point["breakdown_best_us"].items()},
            flush=True,
        )
        if do_fp8:
            f8 = point["fp8"]
            f8["breakdown_best_us"] = breakdown_fp8(
                case, num_tokens, b8, (w1q, w1s, w2q, w2s), args.rounds, target
            )
            print(
                "  fp8 breakdown (prefix medians, us):",
                {k: round(v, 1) for k, v in f8["breakdown_best_us"].items()},
                flush=True,
            )
    return point


def fmt_fp8_row(p: dict[str, object]) -> str:
    res, f8 = p["results"], p["fp8"]
    b, d8, b8 = (res[k]["median_us"] for k in ("best", "fp8_default", "fp8_best"))
    roof = f8["roofline"]["roofline_us"]
    return (
        f"| {p['case']} | {p['tokens']} | {b:.1f} | {d8:.1f} | {b8:.1f} | {b / b8:.2f}x | "
        f"{roof:.1f} | {100 * roof / b8:.0f}% | {_percent(f8.get('roofline_sustained_us'), b8)} | "
        f"{_percent(f8.get('roofline_in_round_us'), b8)} | {f8['best_rel_err_vs_peer']:.1e} | "
        f"`{Tactic.from_dict(f8['best_tactic']).name}` |"
    )


def _percent(roofline: object, us: float) -> str:
    """``roofline`` over ``us`` in percent, ``-`` where a report has no such roofline."""
    return "-" if roofline is None else f"{100 * float(roofline) / us:.0f}%"  # type: ignore[arg-type]


FP8_HEADER = (
    "| case | T/rank | bf16 best µs | fp8 default µs | fp8 best µs | fp8 speedup vs bf16 "
    "best | fp8 roofline µs | fp8 % roofline | fp8 % roofline, sustained | fp8 % roofline, in-round | "
    "fp8 rel err vs bf16 peer | fp8 best tactic |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def fmt_row(p: dict[str, object]) -> str:
    res = p["results"]
    d, b, pe = (res[k]["median_us"] for k in ("default", "best", "peer"))
    roof = p["roofline_us"]
    bound = "mem" if p["mem_us"] >= p["mm_us"] else "mma"
    dt, bt = (Tactic.from_dict(p[k]).name for k in ("default_tactic", "best_tactic"))
    best = "= default" if bt == dt else f"`{bt}`"
    return (
        f"| {p['case']} | {p['tokens']} | {p['rows']} | {d:.1f} | {b:.1f} | {pe:.1f} | "
        f"{roof:.1f} ({bound}) | {pe / b:.2f}x | {100 * roof / b:.0f}% | {100 * roof / pe:.0f}% | "
        f"{_percent(p.get('roofline_sustained_us'), b)} | {_percent(p.get('roofline_in_round_us'), b)} | "
        f"`{dt}` | {best} |"
    )


HEADER = (
    "| case | T/rank | rows R | default µs | best µs | peer µs | roofline µs (bound) | "
    "best vs peer | best % roofline | peer % roofline | best % roofline, sustained | best % roofline, "
    "in-round | default tactic | best tactic |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def print_tables(points: list[dict[str, object]]) -> None:
    """The bf16 table, then the fp8 one, of ``points`` (a report's; failed points left out)."""
    print(HEADER)
    for p in points:
        if "error" not in p:
            print(fmt_row(p))
    if any("fp8" in p for p in points):
        print()
        print(FP8_HEADER)
        for p in points:
            if "fp8" in p:
                print(fmt_fp8_row(p))


def reprint(paths: list[str]) -> None:
    """The tables of saved ``--json`` reports, merged (a later report's point replaces an earlier
    one's), ordered by case as in :data:`CASES` and by T; each report's card, date and ceilings
    first, so every row can be traced to its run. Needs no GPU."""
    merged: dict[tuple[str, int], dict[str, object]] = {}
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        env, c = report["env"], report["ceilings"]
        where = ", ".join(f"{p['case']} T={p['tokens']}" for p in report["points"])
        rates = (
            c["copy_bytes_per_s"] / 1e12,
            c["matmul_flops_per_s"] / 1e12,
            c["fp8_matmul_flops_per_s"] / 1e12,
        )
        sustained = sustained_ceilings(c)
        held = "" if sustained is None else (
            f" (sustained: bf16 {sustained['matmul_flops_per_s'] / 1e12:.0f}, "
            f"fp8 {sustained['fp8_matmul_flops_per_s'] / 1e12:.0f})")  # fmt: skip
        print(f"# {path}: {env['device']}, {env['date']}; copy %.2f TB/s, bf16 %.0f TFLOP/s, fp8 %.0f "
              "TFLOP/s%s; points: %s" % (*rates, held, where))  # fmt: skip
        for p in report["points"]:
            merged[(str(p["case"]), int(p["tokens"]))] = p
    order = {name: n for n, name in enumerate(CASES)}
    print()
    print_tables([merged[k] for k in sorted(merged, key=lambda k: (order.get(k[0], len(order)), k[1]))])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of " + ",".join(CASES))
    ap.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per variant (>= 5)")
    ap.add_argument("--sweep-rounds", type=int, default=3)
    ap.add_argument("--target-ms", type=float, default=20.0, help="device time per graph replay")
    ap.add_argument("--no-sweep", dest="sweep", action="store_false")
    ap.add_argument(
        "--in-round",
        action="store_true",
        help="also time the dense matmuls in every point's rounds (the in-round roofline column); they "
        "slow the layers beside them, see the module docstring",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time stage prefixes (the bf16 best, and the fp8 best at --fp8-tokens)",
    )
    ap.add_argument(
        "--fp8-tokens",
        default="1,256,4096,16384",
        help="T values that also time the fp8 block-scale layer ('' for none)",
    )
    ap.add_argument(
        "--sorted-twin",
        action="store_true",
        help="also time the bf16 and fp8 defaults with their gate/up's x layout flipped (sorted_x; where "
        "the gate/up reads its weights by TMA), in the same interleaved rounds",
    )
    ap.add_argument(
        "--down-twin",
        action="store_true",
        help="where the bf16 default's down is the Gluon kernel, also time that default with Triton's down "
        "(the default without Gluon tiles) in the same interleaved rounds",
    )
    ap.add_argument(
        "--gate-up-twin",
        action="store_true",
        help="where the bf16 space has Gluon gate/ups at the default's block_m (the persistent 16-bit ones: "
        "gathering x's rows, and sorted_x), also time the default with each in the same interleaved rounds",
    )
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument(
        "--from-json", nargs="+", metavar="REPORT", help="print the tables of saved --json reports (no GPU)"
    )
    args = ap.parse_args(argv)
    if args.from_json:
        reprint(args.from_json)
        return 0
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    cases = [CASES[c] for c in args.cases.split(",") if c]
    tokens = [int(t) for t in args.tokens.split(",") if t]
    args.fp8_tokens = {int(t) for t in args.fp8_tokens.split(",") if t}
    props = torch.cuda.get_device_properties(0)
    env = {
        "device": props.name,
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "argv": sys.argv,
    }
    ceilings = measure_ceilings(args.rounds)
    print(f"# {env['device']}  torch {env['torch']}  triton {env['triton']}  {env['date']}")
    by = ", ".join(f"{k} {v / 1e12:.2f}" for k, v in ceilings["copy_bytes_per_s_by_method"].items())
    print(
        f"ceilings: copy {ceilings['copy_bytes_per_s'] / 1e12:.2f} TB/s (read+write; {by}), "
        f"bf16 matmul {ceilings['matmul_flops_per_s'] / 1e12:.0f} TFLOP/s, "
        f"fp8 matmul {ceilings['fp8_matmul_flops_per_s'] / 1e12:.0f} TFLOP/s; sustained "
        f"{ceilings['sustained']['matmul_flops_per_s'] / 1e12:.0f} / "
        f"{ceilings['sustained']['fp8_matmul_flops_per_s'] / 1e12:.0f} TFLOP/s",
        flush=True,
    )
    points = []
    report = {"env": env, "ceilings": ceilings, "points": points}
    for case in cases:
        for t in tokens:
            try:
                p = run_point(case, t, ceilings, args)
            except Exception as exc:
                print(f"{case.name} T={t}: FAILED {type(exc).__name__}: {exc}", flush=True)
                points.append({"case": case.name, "tokens": t, "error": repr(exc)[:500]})
                torch.cuda.empty_cache()
                continue
            points.append(p)
            print(
                fmt_row(p),
                f"err d/b {p['default_rel_err_vs_peer']:.1e}/{p['best_rel_err_vs_peer']:.1e}",
                flush=True,
            )
            if "fp8" in p:
                print("  fp8:", fmt_fp8_row(p), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(report, f, indent=1)
    print()
    print_tables(points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
