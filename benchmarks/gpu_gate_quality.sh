#!/usr/bin/env bash
# Gate quality on the GPU (issue 5, item 11): N runs of suites/perf against the committed baselines
# with unchanged code, then N runs each with the kernel slowed by 5% and 10% (test-only
# $MOETUNE_TEST_SLOWDOWN in kernels/runner.py). Usage: bash benchmarks/gpu_gate_quality.sh [unchanged|slowed|all] [N]
# Reports land in $OUT/r; benchmarks/summarize_gate_quality.py tabulates them.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
mode=${1:-all}; runs=${2:-10}
OUT=${OUT:-out}; mkdir -p "$OUT/r"
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -1
common=(--moetune -p no:cacheprovider -q suites/perf --moetune-cache "$OUT/r/cache.json")
timeout 200 python3 -m pytest "${common[@]}" --co -q > /dev/null  # collect once
if [ "$mode" != slowed ]; then
  for i in $(seq 1 "$runs"); do
    timeout 200 python3 -m pytest "${common[@]}" --moetune-report "$OUT/r/unchanged-$i" 2>&1 | tail -1
  done
fi
if [ "$mode" != unchanged ]; then
  # the first slowed run needs the tuned tactics in the cache: tune without slowdown first
  [ -f "$OUT/r/cache.json" ] || timeout 300 python3 -m pytest "${common[@]}" 2>&1 | tail -1
  for slow in 0.05 0.10; do
    for i in $(seq 1 "$runs"); do
      MOETUNE_TEST_SLOWDOWN=$slow timeout 200 python3 -m pytest "${common[@]}" \
          --moetune-report "$OUT/r/slow$slow-$i" 2>&1 | tail -1
    done
  done
fi
python3 benchmarks/summarize_gate_quality.py "$OUT/r" | tee "$OUT/r/summary.md"
rm -f "$OUT"/r/*.lock "$OUT"/r/*.md.tmp
tar -czf "$OUT/quality.tar.gz" -C "$OUT" r
