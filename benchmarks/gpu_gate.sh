#!/usr/bin/env bash
# Device call: write the H100 baselines of suites/perf, then judge two unchanged reruns (issue 5).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT/r"
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf baselines/nvidia-h100-80gb-hbm3
common=(--moetune -p no:cacheprovider -q suites/perf --moetune-cache "$OUT/r/gate-cache.json")
timeout 300 python3 -m pytest "${common[@]}" --moetune-update-baselines --moetune-report "$OUT/r/gate1" 2>&1 | tail -16
for run in 2 3; do
  timeout 100 python3 -m pytest "${common[@]}" --moetune-report "$OUT/r/gate$run" 2>&1 | tail -14
done
cp -r baselines "$OUT/r/"
rm -f "$OUT"/r/*.lock
tar -czf "$OUT/results.tar.gz" -C "$OUT" r
