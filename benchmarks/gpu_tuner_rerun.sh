#!/usr/bin/env bash
# Device call: GPU kernel correctness, then the tuner speed benchmark (issue 4), after a kernel change.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT"
source benchmarks/device_install.sh
timeout 200 python3 -m pytest -p no:cacheprovider -q -x suites/kernels 2>&1 | tail -3
timeout 200 python3 benchmarks/bench_tuner.py --model qwen3-235b-a22b --topology dep2 --dtype bf16 \
    --tune-max-num-tokens 8192 --out "$OUT" | tee "$OUT/bench_tuner.md"
rm -f "$OUT"/*.lock
