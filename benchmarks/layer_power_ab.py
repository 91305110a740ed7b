"""Layers (and the roofline's dense matmuls) timed three ways in one process while ``nvidia-smi``
samples the SM clock and the board power: is a variant faster per clock, or does it move the clock?

    PYTHONPATH=. python3 benchmarks/layer_power_ab.py [--cases A,B] [--tokens 4096] [--gate-up-twins]
        [--fp8] [--dense] [--json FILE]

Variants per point: the bf16 default; with ``--gate-up-twins`` the same layer with each Gluon
gate/up of its block_m; with ``--fp8`` the fp8 default layer; with ``--dense`` a first point of bf16
``torch.mm`` and fp8 ``torch._scaled_mm`` at 8192^3 (``bench_fused_moe.measure_ceilings``'s ceilings).
The first variant of each point is the base of the printed ratios.

Why: in session 15 the persistent Gluon gate/up was the faster GEMM alone (Nsight Compute, CUDA-graph
A/B) but not in the layer timed by ``bench_fused_moe.py`` (interleaved CUDA-graph rounds), while in
session 16 ``layer_kernels.py`` (eager calls under the profiler) saw the layer 4-5% faster with it at
qwen3-235b. The three timings here, per variant, on the same graphs (``bench_fused_moe.Timed``: ~20 ms
of back-to-back layer calls cycling over 4 routings):

1. ``interleaved``: ``--rounds`` rounds, the variants alternating replay by replay (the benchmark's
   and the tuner's way);
2. ``sustained``: ``--blocks`` passes over the variants, each replaying its graph back to back for
   ``--sustain-s`` seconds with no rest in between; only the replays after the first ``--settle-s``
   count, when the clock has settled where this variant's power draw puts it (session 16: the H200
   runs these layers at its power cap, ~1.5 GHz, and rests or order bias an unsettled window);
3. ``kernels``: per-kernel device time per layer call inside two graph replays, read by
   ``torch.profiler``.

Each window's mean SM clock (MHz), power (W) and the union of the clock-event reasons that
``nvidia-smi`` reported are printed beside its times, so a variant that runs faster per clock but
lowers the clock shows as such.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import operator
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_fused_moe import CASES, VARIANTS, Case, Timed, balanced_topk, gluon_gate_up_twins
from benchmarks.layer_kernels import per_kernel_us
from kernels import Tactic, default_tactic, fused_moe, fused_moe_fp8, quantize_fp8_block
from kernels.fused_moe import problem_of
from kernels.gluon_support import gluon_unready

QUERIES = (  # the instantaneous power where nvidia-smi has it; power.draw is a 1 s average on Hopper
    "timestamp,clocks.sm,power.draw.instant,temperature.gpu,clocks_event_reasons.active",
    "timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active",
)


Sample = tuple[datetime.datetime, float, float, float, int]
"""(time, SM MHz, W, deg C, clock-event reasons bit mask) of one ``nvidia-smi`` line."""


def parse_samples(text: str) -> list[Sample]:
    """The samples of ``nvidia-smi --format=csv,noheader,nounits`` output with the :data:`QUERIES`
    fields; other lines (nvidia-smi's own messages, a torn last line) are skipped."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            stamp = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f")
            out.append((stamp, float(parts[1]), float(parts[2]), float(parts[3]), int(parts[4], 16)))
        except (ValueError, IndexError):
            continue
    return out


def summarize(samples: list[Sample], start: datetime.datetime, end: datetime.datetime) -> dict[str, Any]:
    """Means of the samples taken in ``[start, end]`` (NaN without any) and the OR of their reasons."""
    inside = [s for s in samples if start <= s[0] <= end]

    def mean(j: int) -> float:
        return statistics.fmean(s[j] for s in inside) if inside else math.nan

    reasons = functools.reduce(operator.or_, (s[4] for s in inside), 0)
    return {"samples": len(inside), "sm_mhz": mean(1), "watts": mean(2), "temp_c": mean(3),
            "reasons": hex(reasons)}  # fmt: skip


class Sampler:
    """``nvidia-smi`` polling GPU 0 every ``period_ms`` into a temp file, read back per time window."""

    def __init__(self, period_ms: int = 20) -> None:
        for query in QUERIES:
            self.file = tempfile.NamedTemporaryFile("w+", suffix=".csv")  # noqa: SIM115 (closed in close())
            self.proc = subprocess.Popen(
                ["nvidia-smi", "-i", "0", f"--query-gpu={query}", "--format=csv,noheader,nounits",
                 f"-lms={period_ms}"], stdout=self.file, stderr=subprocess.STDOUT)  # fmt: skip
            time.sleep(0.5)
            if self.samples():
                self.query = query
                print(f"sampling {query}")
                return
            self.close()
        raise RuntimeError(f"nvidia-smi answers none of {QUERIES}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.file.close()

    def samples(self) -> list[Sample]:
        """Every sample so far."""
        self.file.flush()
        self.file.seek(0)
        return parse_samples(self.file.read())

    def window(self, start: datetime.datetime, end: datetime.datetime) -> dict[str, Any]:
        """:func:`summarize` of the samples taken in ``[start, end]``."""
        return summarize(self.samples(), start, end)


def graph_kernels(tm: Timed, replays: int = 2) -> dict[str, float]:
    """Mean device us per layer call of each kernel in ``tm``'s graph, by the profiler."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            tm.graph.replay()
        torch.cuda.synchronize()
    return per_kernel_us(prof, replays * tm.n, width=48)


def sustained(tm: Timed, seconds: float, settle_s: float) -> tuple[list[float], datetime.datetime]:
    """Per-call us of the replays of ``tm``'s graph, replayed back to back for ``seconds``, that start
    after the first ``settle_s`` (when the clock has settled at this variant's power), and the wall
    time the settled part began."""
    pairs = []
    begin = time.monotonic()
    settled_at = datetime.datetime.now()
    while (now := time.monotonic()) < begin + seconds:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        tm.graph.replay()
        end.record()
        pairs.append((now - begin >= settle_s, start, end))
        if len(pairs) % 4 == 0:
            end.synchronize()  # keep the queue short so the wall clock follows the GPU's
        if now - begin < settle_s:
            settled_at = datetime.datetime.now()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1000.0 / tm.n for keep, s, e in pairs if keep], settled_at


def time_variants(timed: dict[str, Timed], args: argparse.Namespace, sampler: Sampler,
                  flops: dict[str, float]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Interleaved, sustained and per-kernel times of each variant (the first is the baseline of
    the printed ratios); ``flops`` per call, where known, adds TFLOP/s at the sustained time."""
    rows: dict[str, dict[str, Any]] = {label: {} for label in timed}
    inter: dict[str, list[float]] = {label: [] for label in timed}
    start = datetime.datetime.now()
    for _ in range(args.rounds):
        for label, tm in timed.items():
            tm.round()
            inter[label].append(tm.rounds[-1])
    power = sampler.window(start, datetime.datetime.now())
    for label in timed:
        rows[label]["interleaved_us"] = statistics.median(inter[label])
        rows[label]["interleaved_power"] = power  # one window for all: they alternate
    settled: dict[str, list[list[float]]] = {label: [] for label in timed}
    windows: dict[str, list[dict[str, Any]]] = {label: [] for label in timed}
    for _ in range(args.blocks):  # blocks of each variant in turn, no rest: each starts where the last left
        for label, tm in timed.items():
            per_call, settled_at = sustained(tm, args.sustain_s, args.settle_s)
            settled[label].append(per_call)
            windows[label].append(sampler.window(settled_at, datetime.datetime.now()))
    for label in timed:
        rows[label]["sustained_us"] = statistics.median(us for block in settled[label] for us in block)
        rows[label]["sustained_block_medians_us"] = [statistics.median(block) for block in settled[label]]
        rows[label]["sustained_windows"] = windows[label]
        rows[label]["sustained_power"] = {
            key: statistics.fmean(w[key] for w in windows[label]) for key in ("sm_mhz", "watts", "temp_c")
        } | {"reasons": hex(functools.reduce(operator.or_, (int(w["reasons"], 16) for w in windows[label])))}
        if label in flops:
            rows[label]["sustained_tflops"] = flops[label] / rows[label]["sustained_us"] * 1e-6
    for label, tm in timed.items():
        rows[label]["kernels_us"] = graph_kernels(tm)
    base = next(iter(rows.values()))
    for label, row in rows.items():
        sp, inter_us, sus_us = row["sustained_power"], row["interleaved_us"], row["sustained_us"]
        blocks = " ".join(f"{b:.0f}" for b in row["sustained_block_medians_us"])
        rate = f" {row['sustained_tflops']:.0f} TFLOP/s" if "sustained_tflops" in row else ""
        kern = ", ".join(f"{k.split('(')[0][:34]} {v:.1f}" for k, v in
                         sorted(row["kernels_us"].items(), key=lambda kv: -kv[1])[:3])  # fmt: skip
        print(f"  {label:32s} interleaved {inter_us:8.1f} us ({inter_us / base['interleaved_us']:.3f}x) | "
              f"sustained {sus_us:8.1f} us ({sus_us / base['sustained_us']:.3f}x){rate} at "
              f"{sp['sm_mhz']:.0f} MHz {sp['watts']:.0f} W {sp['temp_c']:.0f} C reasons {sp['reasons']} "
              f"(blocks {blocks}) | "
              f"kernels sum {sum(row['kernels_us'].values()):.1f}: {kern}")  # fmt: skip
    print(f"  interleaved window: {base['interleaved_power']}")
    return rows


def layer_inputs(case: Case, tokens: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[Any]]:
    """Seeded bf16 ``w1 (L, 2I, H)``, ``w2 (L, H, I)`` and :data:`~benchmarks.bench_fused_moe.VARIANTS`
    pairs of ``x (T, H)`` and its balanced routing ``(topk_ids, topk_weights)``, on the GPU."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local = case.hidden, case.intermediate, case.local_experts
    w1 = (torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)).to(torch.bfloat16)
    w2 = (torch.randn(num_local, h, i, device=dev) / math.sqrt(i)).to(torch.bfloat16)
    xs = [torch.randn(tokens, h, device=dev).to(torch.bfloat16) for _ in range(VARIANTS)]
    routes = [balanced_topk(tokens, case, v * tokens * case.top_k, dev) for v in range(VARIANTS)]
    return w1, w2, xs, routes


def layer_calls(layer: Callable[..., object], weights: tuple[torch.Tensor, ...], xs: list[torch.Tensor],
                routes: list[Any], case: Case, tactic: Tactic) -> list[Callable[[], object]]:  # fmt: skip
    """One call of ``layer`` (``fused_moe`` or ``fused_moe_fp8``) per x and its routing."""
    return [partial(layer, x, *weights, *route, local_expert_offset=case.offset, tactic=tactic)
            for x, route in zip(xs, routes, strict=True)]  # fmt: skip


def one_point(name: str, tokens: int, args: argparse.Namespace, sampler: Sampler) -> dict[str, Any]:
    """The bf16 default, and with ``--gate-up-twins`` its Gluon gate/up twins, with ``--fp8`` the
    fp8 default, at one point."""
    case = CASES[name]
    w1, w2, xs, routes = layer_inputs(case, tokens)
    gluon = gluon_unready() is None
    problem = problem_of(xs[0], w1, routes[0][0])
    dflt = default_tactic(problem, gluon=gluon)
    variants = {"default": dflt}
    for t in gluon_gate_up_twins(problem, dflt, gluon) if args.gate_up_twins else ():
        variants[f"gate_up_{t.gate_up.name}"] = t
    target = args.target_ms * 1000.0
    timed = {label: Timed(layer_calls(fused_moe, (w1, w2), xs, routes, case, t), target)
             for label, t in variants.items()}  # fmt: skip
    names = {label: t.name for label, t in variants.items()}
    if args.fp8:
        t8 = default_tactic(replace(problem, dtype="float8_e4m3fn"), gluon=gluon)
        weights8 = (*quantize_fp8_block(w1), *quantize_fp8_block(w2))
        timed["fp8 default"] = Timed(layer_calls(fused_moe_fp8, weights8, xs, routes, case, t8), target)
        names["fp8 default"] = t8.name
    print(f"\n{name} T={tokens}")
    rows = time_variants(timed, args, sampler, {})
    for label, row in rows.items():
        row["tactic"] = names[label]
    return {"case": name, "tokens": tokens, "variants": rows}


def dense_point(args: argparse.Namespace, sampler: Sampler) -> dict[str, Any]:
    """The roofline's dense matmuls (``bench_fused_moe.measure_ceilings``: bf16 ``torch.mm`` and fp8
    ``torch._scaled_mm``, 8192^3) under the same interleaved and sustained timing."""
    size = 8192
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    one = torch.ones((), device="cuda", dtype=torch.float32)
    target = args.target_ms * 1000.0
    timed = {
        "bf16 mm 8192": Timed([lambda: torch.mm(a, b)], target),
        "fp8 _scaled_mm 8192": Timed(
            [lambda: torch._scaled_mm(a8, b8.t(), one, one, out_dtype=torch.bfloat16)], target
        ),
    }
    print("\ndense matmuls")
    rows = time_variants(timed, args, sampler, dict.fromkeys(timed, 2.0 * size**3))
    return {"case": "dense", "tokens": size, "variants": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="qwen3-235b-a22b-dep2,deepseek-r1-dep8")
    ap.add_argument("--tokens", default="4096")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=3, help="sustained blocks per variant")
    ap.add_argument("--sustain-s", type=float, default=2.0, help="seconds per sustained block")
    ap.add_argument("--settle-s", type=float, default=1.0, help="seconds of each block not timed")
    ap.add_argument("--target-ms", type=float, default=20.0)
    ap.add_argument("--gate-up-twins", action="store_true", help="the bf16 default with each Gluon gate/up")
    ap.add_argument("--fp8", action="store_true", help="also the fp8 default layer")
    ap.add_argument("--dense", action="store_true", help="also the roofline's dense bf16 and fp8 matmuls")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sampler = Sampler()
    try:
        points = [dense_point(args, sampler)] if args.dense else []
        points += [one_point(name, int(t), args, sampler)
                   for name in args.cases.split(",") if name for t in args.tokens.split(",")]  # fmt: skip
    finally:
        sampler.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(points, f, indent=1)


if __name__ == "__main__":
    main()
