"""Where parallel tuning spends more than one GPU did: per-bucket tuning wall time of two caches.

    python3 benchmarks/tuning_wall.py ONE_GPU_CACHE.json N_GPU_CACHE.json [--top 10]

Each tuning cache entry records the wall seconds its bucket's tuning took (``wall_s``, compiling and
timing together). For the buckets both caches hold, prints the totals and the buckets that took
longest beyond their one-GPU time (issue 7). The summed difference is the duplicated work. A single
bucket's difference may instead be compiling that moved: with several workers, a kernel is compiled
by whichever bucket reaches it first, so one bucket gains what another loses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABEL_FIELDS = (
    "dtype",
    "hidden",
    "intermediate",
    "num_experts",
    "local_num_experts",
    "ep_size",
    "use_dp",
    "distribution",
    "routing",
    "bucket",
)


def load_walls(path: Path) -> dict[str, float]:
    """``{entry key: wall_s}`` of a tuning cache file."""
    entries = json.loads(path.read_text())["entries"]
    return {key: float(entry["wall_s"]) for key, entry in entries.items()}


def label(key: str) -> str:
    """A short name for a cache key ``field=value|...``: the fields that tell buckets apart."""
    fields = dict(part.split("=", 1) for part in key.split("|") if "=" in part)
    return " ".join(f"{name}={fields[name]}" for name in LABEL_FIELDS if name in fields)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("one_gpu", type=Path)
    ap.add_argument("n_gpu", type=Path)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    one, many = load_walls(args.one_gpu), load_walls(args.n_gpu)
    shared = sorted(one.keys() & many.keys())
    total_one, total_many = sum(one[k] for k in shared), sum(many[k] for k in shared)
    print(f"buckets: {len(one)} / {len(many)} ({len(shared)} in both)")
    print(
        f"tuning s summed: 1 GPU {total_one:.1f}, N GPUs {total_many:.1f} "
        f"({total_many - total_one:+.1f} s, {100 * (total_many / total_one - 1):+.0f}%)"
    )
    print("| extra s | 1 GPU s | N GPUs s | bucket |\n|---|---|---|---|")
    for key in sorted(shared, key=lambda k: one[k] - many[k])[: args.top]:
        print(f"| {many[key] - one[key]:+.1f} | {one[key]:.1f} | {many[key]:.1f} | {label(key)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
