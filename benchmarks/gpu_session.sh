#!/usr/bin/env bash
# One device call for the tuner and the gate (issues 4 and 5): install, tuner speed, GPU tuning test,
# gate: write baselines, then judge an unchanged rerun. Results under $OUT (tarred).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT/r"
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 240 python3 benchmarks/bench_tuner.py --model qwen3-235b-a22b --topology dep2 --dtype bf16 \
    --tune-max-num-tokens 8192 --out "$OUT/r" | tee "$OUT/r/bench_tuner.md"
{ time timeout 60 moetune tune --model qwen3-235b-a22b --topology dep2 --dtype bf16 --no-progress \
    --cache "$OUT/r/tuning-qwen3-235b-a22b-dep2-bf16.json" --export vllm "$OUT/r/vllm"; } 2>&1 | tail -8
timeout 150 python3 -m pytest -p no:cacheprovider -q suites/kernels/test_runner.py -k "bf16 or registered" 2>&1 | tail -3
common=(--moetune -p no:cacheprovider -q -k bf16 suites/perf --moetune-cache "$OUT/r/gate-cache.json")
timeout 200 python3 -m pytest "${common[@]}" --moetune-update-baselines --moetune-report "$OUT/r/gate1" 2>&1 | tail -12
timeout 100 python3 -m pytest "${common[@]}" --moetune-report "$OUT/r/gate2" 2>&1 | tail -12
cp -r baselines "$OUT/r/"
tar -czf "$OUT/results.tar.gz" -C "$OUT" r
