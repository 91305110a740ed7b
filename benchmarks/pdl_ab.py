#!/usr/bin/env python3
"""Same-run A/B of programmatic dependent launch (``kernels.pdl``): the layer with and without it.

    PYTHONPATH=. python3 benchmarks/pdl_ab.py [--cases A,B] [--tokens 1,16] [--dtypes bf16,fp8] \\
        [--rounds 9] [--json OUT.json]
    PYTHONPATH=. python3 benchmarks/pdl_ab.py --profile REGEX [--baselines B.json] [--json OUT.json]

For each of the issue's cases (``bench_fused_moe.CASES``, balanced routing) at each token count and
dtype, the default tactic's layer (``fused_moe``, or ``fused_moe_fp8`` on block-quantized weights)
is captured twice in CUDA graphs of the same number of calls, launched without PDL and with it
(``kernels.pdl.pdl_forced``), after checking that both give the same bits. The graphs are replayed
in alternating order, ``--rounds`` rounds each, and the medians printed with their ratio (PDL over
none; below 1 is faster) and the paired ratio (:func:`paired_ratio`), which a clock step in the
middle of a point's rounds does not move. Runs 90-91 (BENCHMARKS.md) also timed a variant whose
GEMMs let the next kernel launch at once (commit 604c55b's ``EARLY`` mode), since dropped, and run 97
PDL on the Gluon GEMMs too against the Triton kernels alone (commit 79ec3d9's ``--against triton``),
since dropped. Every round goes to ``--json``, after every point.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_fused_moe import CASES, Case, Timed, balanced_topk
from kernels import default_tactic, fused_moe, fused_moe_fp8, gluon_unready, problem_of, quantize_fp8_block
from kernels.pdl import pdl_forced

DEFAULT_BASELINES = Path("baselines/nvidia-h200/suites.perf.test_tuned_throughput.json")


def layer_call(case: Case, num_tokens: int, dtype: str) -> tuple[Callable[[], torch.Tensor], str]:
    """A zero-argument call of the layer at this point (default tactic) and the tactic's name."""
    dev = torch.device("cuda")
    h, i, num_local = case.hidden, case.intermediate, case.local_experts
    gen = torch.Generator(device=dev).manual_seed(7)
    w1 = torch.randn(num_local, 2 * i, h, device=dev, generator=gen) / math.sqrt(h)
    w2 = torch.randn(num_local, h, i, device=dev, generator=gen) / math.sqrt(i)
    x = torch.randn(num_tokens, h, device=dev, generator=gen).to(torch.bfloat16)
    ids, wts = balanced_topk(num_tokens, case, 0, dev)
    problem = problem_of(x, w1, ids)
    gluon = gluon_unready(dev) is None
    if dtype == "bf16":
        w1b, w2b = w1.to(torch.bfloat16), w2.to(torch.bfloat16)
        del w1, w2

        def call() -> torch.Tensor:
            return fused_moe(x, w1b, w2b, ids, wts, local_expert_offset=case.offset)

        return call, default_tactic(replace(problem, dtype="bfloat16"), gluon=gluon).name
    (w1q, w1s), (w2q, w2s) = quantize_fp8_block(w1), quantize_fp8_block(w2)
    del w1, w2

    def call_fp8() -> torch.Tensor:
        return fused_moe_fp8(x, w1q, w1s, w2q, w2s, ids, wts, local_expert_offset=case.offset)

    return call_fp8, default_tactic(replace(problem, dtype="float8_e4m3fn"), gluon=gluon).name


MODES = {"off": False, "pdl": True}
"""The variants timed: without PDL and with it."""


def paired_ratio(base_rounds: list[float], rounds: list[float]) -> float:
    """Median over rounds of ``rounds[r] / base_rounds[r]``: each round's two variants ran next to
    each other, so a change of clock between rounds (the H200 at its power cap) cancels, where the
    ratio of the two medians can pick rounds on either side of it (H200 run 97: 1.079x against
    0.997x paired at qwen3-235b fp8 T = 1024)."""
    return statistics.median(b / a for a, b in zip(base_rounds, rounds, strict=True))


def ab_point(case: Case, num_tokens: int, dtype: str, rounds: int, target_us: float) -> dict[str, Any]:
    """Time the layer at one point in each of :data:`MODES`, interleaved (each round in another
    order); raises if their bits differ."""
    call, tactic = layer_call(case, num_tokens, dtype)
    timed: dict[str, Timed] = {}
    outs: dict[str, torch.Tensor] = {}
    for name, mode in MODES.items():
        with pdl_forced(mode):
            outs[name] = call().clone()
            timed[name] = Timed([call], target_us)
    torch.cuda.synchronize()
    for name, out in outs.items():
        if not torch.equal(out, outs["off"]):
            raise AssertionError(f"{case.name} T={num_tokens} {dtype}: the {name} layer's bits differ")
    names = list(MODES)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            timed[name].round()
    medians = {name: tm.median for name, tm in timed.items()}
    return {
        "case": case.name, "tokens": num_tokens, "dtype": dtype, "tactic": tactic,
        "us": medians, "ratio": {name: us / medians["off"] for name, us in medians.items()},
        "paired": paired_ratio(timed["off"].rounds, timed["pdl"].rounds),
        "calls_per_graph": timed["off"].n, "rounds_us": {name: tm.rounds for name, tm in timed.items()},
    }  # fmt: skip


def profile_point(case_id: str, baselines: Path, rounds: int, repeats: int) -> dict[str, Any]:
    """Time one full-profile case with its tuned tactic, PDL off and on (see the module docstring)."""
    from benchmarks.default_ab import timing_passes
    from kernels.runner import FusedMoERunner, kernel_problem
    from kernels.tactics import Tactic
    from pytest_moetune.routing import dummy_topk
    from pytest_moetune.timing import CudaGraphTimer
    from suites.perf.cases import full_cases

    case = next(c for c in full_cases() if c.id == case_id)
    entry = json.loads(baselines.read_text())["entries"].get(case.id) if baselines.exists() else None
    problem = case.problem()
    tactic = (Tactic.from_dict(entry["tactic"]) if entry else
              default_tactic(kernel_problem(problem.at(case.num_tokens)), gluon=True))  # fmt: skip
    runner = FusedMoERunner()
    ids, weights = dummy_topk(case.num_tokens, problem.topology, problem.distribution, case.seed)
    inputs = runner.make_inputs(problem.at(case.num_tokens), ids.cuda(), weights.cuda())
    outs = {}
    for name, enabled in MODES.items():
        with pdl_forced(enabled):
            outs[name] = runner.run(inputs, tactic).clone()
    if not torch.equal(outs["off"], outs["pdl"]):
        raise AssertionError(f"{case.id}: the PDL layer's bits differ")
    timer = CudaGraphTimer(rounds=rounds, warmup_us=20_000.0)
    rounds_us: dict[str, list[float]] = {name: [] for name in MODES}
    for timed, order in timing_passes(list(MODES), repeats):
        for name in order:
            with pdl_forced(MODES[name]):
                measured = timer.measure([lambda: runner.run(inputs, tactic)]).rounds_us
            if timed:
                rounds_us[name] += measured
    medians = {name: statistics.median(r) for name, r in rounds_us.items()}
    return {
        "case": case.id, "tokens": case.num_tokens, "dtype": case.dtype, "tactic": tactic.name,
        "us": medians, "ratio": {name: us / medians["off"] for name, us in medians.items()},
        "paired": paired_ratio(rounds_us["off"], rounds_us["pdl"]), "rounds_us": rounds_us,
    }  # fmt: skip


def row(p: dict[str, Any]) -> str:
    """One printed line of a point's result (:func:`ab_point`, :func:`profile_point`)."""
    us, ratio = p["us"], p["ratio"]
    return (f"{p['case']:<22} {p['tokens']:>6} {p['dtype']:<5} {us['off']:>9.1f} {us['pdl']:>9.1f} "
            f"{ratio['pdl']:>8.3f}x {p['paired']:>8.3f}x  {p['tactic']}")  # fmt: skip


def points_of(args: argparse.Namespace) -> list[Callable[[], dict[str, Any]]]:
    """One call per point to time, from the command line."""
    if args.profile is not None:
        from suites.perf.cases import full_cases

        ids = [c.id for c in full_cases() if args.profile.search(c.id)]
        return [partial(profile_point, i, args.baselines, args.rounds, args.repeats) for i in ids]
    return [
        partial(ab_point, CASES[name], tokens, dtype, args.rounds, args.target_ms * 1000.0)
        for name in args.cases.split(",")
        for tokens in (int(t) for t in args.tokens.split(","))
        for dtype in args.dtypes.split(",")
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--tokens", default="1,16,64,256,1024,4096")
    ap.add_argument("--dtypes", default="bf16,fp8")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--target-ms", type=float, default=20.0, help="device time per graph replay")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", type=re.compile, help="regex: these full-profile cases instead")
    ap.add_argument("--baselines", type=Path, default=DEFAULT_BASELINES, help="their tuned tactics")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per --profile case")
    args = ap.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    bad_dtypes = [d for d in args.dtypes.split(",") if d not in ("bf16", "fp8")]
    if unknown or bad_dtypes:
        ap.error(f"unknown case(s) {unknown} or dtype(s) {bad_dtypes}; cases: {', '.join(CASES)}")
    if not torch.cuda.is_available():
        print("pdl_ab: needs a CUDA GPU", file=sys.stderr)
        return 2
    points: list[dict[str, Any]] = []
    heads = ("off us", "pdl us", "pdl/off", "paired")
    print(f"{'case':<22} {'T':>6} {'dtype':<5} " + " ".join(f"{h:>9}" for h in heads) + "  tactic")
    for point in points_of(args):
        p = point()
        points.append(p)
        print(row(p), flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(points, indent=1))
        torch.cuda.empty_cache()
    for label, ratios in (("pdl/off", [float(p["ratio"]["pdl"]) for p in points]),
                          ("paired", [float(p["paired"]) for p in points])):  # fmt: skip
        geo = math.exp(statistics.fmean(math.log(r) for r in ratios))
        print(f"{label} geomean over {len(ratios)} points: {geo:.3f}x "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
