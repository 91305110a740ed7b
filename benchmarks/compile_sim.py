"""The compiling of parallel tuning, measured on the CPU: the full profile's tactic spaces compiled
for sm_90a by 1 or 2 worker processes, without and with compile claims (issue 7).

    PYTHONPATH=. python3 benchmarks/compile_sim.py [--json PATH]

Each worker runs the real ``Tuner`` (stagger, claims, compile-then-time order) over the cases of
``suites/perf --moetune-profile full``, handed out the way pytest-xdist's load scheduling does
(chunks of consecutive cases, so two workers are mostly in different models). Its runner compiles
the two GEMM kernels of a tactic with ``triton.compile`` for an H100 target instead of launching
them (the launch specializations of ``benchmarks/gemm_registers.py``, TMA descriptors included),
and its timer returns a constant. The workers share one fresh Triton cache folder, as xdist workers
on one GPU host do. So a run takes only the tuning's GEMM compile work, and the sum of the workers'
busy time against the 1-worker run shows the compiling that parallel tuning does twice. On the GPU,
compiling is a part of tuning, not all of it (BENCHMARKS.md, runs 25-26).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

RUN_CONFIGS = "1:off,2:off,2:on"
"""Runs in order, ``workers:claims``; repeat them to see the spread (which worker compiles a
shared kernel first depends on timing)."""


class CompileOnlyRunner:
    """``kernels.runner.FusedMoERunner``'s tactic space, with ``run`` compiling instead of launching."""

    def __init__(self) -> None:
        from kernels.runner import FusedMoERunner

        self.inner = FusedMoERunner()
        self.name = self.inner.name
        self.source_hash = self.inner.source_hash
        self.compiled: set[tuple[Any, ...]] = set()  # like Triton's in-process JIT cache

    def supports(self, problem: Any) -> bool:
        return self.inner.supports(problem)

    def tactics(self, problem: Any) -> list[Any]:
        return self.inner.tactics(problem)

    def default_tactic(self, problem: Any) -> Any:
        return self.inner.default_tactic(problem)

    def tactic_to_dict(self, tactic: Any) -> dict[str, Any]:
        return self.inner.tactic_to_dict(tactic)

    def tactic_from_dict(self, data: dict[str, Any]) -> Any:
        return self.inner.tactic_from_dict(data)

    def make_inputs(self, problem: Any, topk_ids: Any, topk_weights: Any) -> Any:
        return problem

    def compile_units(self, problem: Any, tactic: Any) -> list[tuple[Any, ...]]:
        return self.inner.compile_units(problem, tactic)

    def reference(self, inputs: Any) -> Any:
        return None

    def max_relative_error(self, problem: Any) -> float:
        return self.inner.max_relative_error(problem)

    def run(self, problem: Any, tactic: Any) -> None:
        from benchmarks.gemm_registers import compile_gemm

        fp8 = problem.dtype == "fp8_w8a8"
        hidden, inter = problem.model.hidden, problem.model.intermediate
        for gemm, tile, k in (("gate_up", tactic.gate_up, hidden), ("down", tactic.down, inter)):
            key = (gemm, fp8, tactic.block_m, tile, k % tile.block_k == 0)
            if key not in self.compiled:
                compile_gemm(gemm, fp8, tactic.block_m, tile, even_k=key[-1])
                self.compiled.add(key)


class ConstantTimer:
    """Runs each launch once (compiling it) and reports 1 us: the proxy times nothing."""

    name = "constant"

    def measure(self, launches: list[Callable[[], object]]) -> Any:
        from pytest_moetune.timing import Measurement

        for launch in launches:
            launch()
        return Measurement((1.0,), 1)


class XdistLoadSchedule:
    """pytest-xdist's ``load`` scheduling (``xdist/scheduler/load.py``) over shared state: each
    worker first gets a chunk of consecutive items (a quarter of its share), and a worker left with
    fewer than 2 is topped up from the front of the pending items to half of its share of them."""

    def __init__(self, manager: Any, items: int, workers: int) -> None:
        chunk = max(2, items // workers // 4) if items >= 2 * workers else 1
        self.lock = manager.Lock()
        self.pending = manager.list(range(workers * chunk, items))
        self.own = [manager.list(range(w * chunk, min(items, (w + 1) * chunk))) for w in range(workers)]
        self.workers = workers

    def next_item(self, worker: int) -> int | None:
        with self.lock:
            own = self.own[worker]
            if len(own) < 2 and len(self.pending):
                want = max(2, len(self.pending) // self.workers // 2) - len(own)
                for _ in range(min(want, len(self.pending))):
                    own.append(self.pending.pop(0))
            return own.pop(0) if len(own) else None


def worker(
    index: int, count: int, schedule: XdistLoadSchedule, cache_dir: str, claims_dir: str | None, out: Any
) -> None:
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    from pytest_moetune.compile_claims import CompileClaims
    from pytest_moetune.tuner import MemoryStore, Tuner
    from suites.perf.cases import full_cases

    all_cases = full_cases()
    tuner = Tuner(
        CompileOnlyRunner(),  # type: ignore[arg-type]
        MemoryStore(),
        ConstantTimer(),  # type: ignore[arg-type]
        device="cpu",
        check=False,
        stagger=(index, count),
        claims=CompileClaims(claims_dir) if claims_dir else None,
        progress=False,
    )
    busy = 0.0
    while (i := schedule.next_item(index)) is not None:
        start = time.perf_counter()
        case = all_cases[i]
        problem = case.problem()
        tuner.tune(problem, buckets=[problem.bucket_for(case.num_tokens)])
        busy += time.perf_counter() - start
    out.put((index, busy))


def run(workers: int, claims: bool, limit: int | None) -> dict[str, Any]:
    from suites.perf.cases import full_cases

    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    schedule = XdistLoadSchedule(manager, len(full_cases()[:limit]), workers)
    results: Any = context.Queue()
    cache_dir = tempfile.mkdtemp(prefix="moetune-sim-triton-")
    claims_dir = tempfile.mkdtemp(prefix="moetune-sim-claims-") if claims else None
    start = time.perf_counter()
    procs = [
        context.Process(target=worker, args=(i, workers, schedule, cache_dir, claims_dir, results))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    busy = dict(results.get() for _ in procs)
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - start
    manager.shutdown()
    shutil.rmtree(cache_dir, ignore_errors=True)
    if claims_dir:
        shutil.rmtree(claims_dir, ignore_errors=True)
    return {"workers": workers, "claims": claims, "wall_s": wall, "busy_s": [busy[i] for i in sorted(busy)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--cases", type=int, default=None, help="only the first N cases (a smoke run)")
    ap.add_argument("--runs", default=RUN_CONFIGS, help=f"workers:claims,... (default {RUN_CONFIGS})")
    args = ap.parse_args()
    rows = []
    for spec in args.runs.split(","):
        workers, claims = spec.split(":")
        if claims not in ("on", "off") or not workers.isdigit() or int(workers) < 1:
            raise SystemExit(f"--runs: {spec!r} is not workers:on|off")
        row = run(int(workers), claims == "on", args.cases)
        rows.append(row)
        print(
            f"workers {row['workers']}, claims {'on' if row['claims'] else 'off'}: "
            + f"wall {row['wall_s']:.1f} s, busy per worker "
            + ", ".join(f"{b:.1f}" for b in row["busy_s"])
            + f" s, summed {sum(row['busy_s']):.1f} s",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
