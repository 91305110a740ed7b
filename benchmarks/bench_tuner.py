"""Tuner speed on the GPU (issue 4): the full bucket set of one model x topology, cold then warm.

Run on the device machine from the repo root:

    PYTHONPATH=. python3 benchmarks/bench_tuner.py --model qwen3-235b-a22b --topology dep2 \
        --dtype bf16 --tune-max-num-tokens 8192 --out $OUT

Cold: a fresh tuning cache and a fresh Triton cache directory (so compilation is included). Warm:
the same tuning again in the same process, every bucket from the tuning cache. Prints a markdown
table of the tactic, time and wall time per bucket; writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3-235b-a22b")
    parser.add_argument("--topology", default="dep2")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--tune-max-num-tokens", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="triton-cold-"))

    import torch

    from kernels.runner import FusedMoERunner
    from pytest_moetune import Topology, get_model
    from pytest_moetune.cache import TuningCache
    from pytest_moetune.fingerprint import EnvironmentFingerprint
    from pytest_moetune.problem import TuningProblem
    from pytest_moetune.tuner import Tuner

    model = get_model(args.model)
    topology = Topology.parse(args.topology, model.num_experts, model.top_k)
    problem = TuningProblem(model, topology, args.dtype, tune_max_num_tokens=args.tune_max_num_tokens)
    runner = FusedMoERunner()
    cache_path = args.out / f"tuning-{args.model}-{args.topology}-{args.dtype}.json"
    cache_path.unlink(missing_ok=True)
    store = TuningCache(cache_path, EnvironmentFingerprint.current())

    start = time.perf_counter()
    cold = Tuner(runner, store, progress=False).tune(problem)
    torch.cuda.synchronize()
    cold_wall = time.perf_counter() - start
    start = time.perf_counter()
    warm = Tuner(runner, TuningCache(cache_path, EnvironmentFingerprint.current()), progress=False).tune(
        problem
    )
    warm_wall = time.perf_counter() - start
    assert all(b.from_cache for b in warm.buckets)

    device = torch.cuda.get_device_name()
    print(
        f"# tuner speed: {args.model} {args.topology} {args.dtype}, "
        f"buckets 1..{args.tune_max_num_tokens}, {device}"
    )
    print(f"cold (fresh tuning cache and Triton cache, compilation included): {cold_wall:.1f} s wall")
    print(f"warm (every bucket from the tuning cache, same process): {warm_wall:.3f} s wall\n")
    print("| bucket | rows/expert | tactics timed | failed | best us | wall s | tactic |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for b in cold.buckets:
        name = runner.tactic_from_dict(runner.tactic_to_dict(b.tactic)).name
        per_expert = topology.expected_rows_per_local_expert(b.bucket)
        print(
            f"| {b.bucket} | {per_expert:.1f} | {b.timed} | {b.failed} | {b.time_us:.1f} "
            f"| {b.wall_s:.2f} | `{name}` |"
        )
        rows.append(
            {
                "bucket": b.bucket,
                "timed": b.timed,
                "failed": b.failed,
                "time_us": b.time_us,
                "wall_s": b.wall_s,
                "tactic": runner.tactic_to_dict(b.tactic),
                "failures": b.failures,
            }
        )
    summary = {
        "device": device,
        "torch": torch.__version__,
        "model": args.model,
        "topology": args.topology,
        "dtype": args.dtype,
        "cold_wall_s": cold_wall,
        "warm_wall_s": warm_wall,
        "buckets": rows,
        "argv": sys.argv,
    }
    (args.out / f"bench_tuner-{args.model}-{args.topology}-{args.dtype}.json").write_text(
        json.dumps(summary, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
