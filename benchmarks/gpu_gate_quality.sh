#!/usr/bin/env bash
# Gate quality on the GPU (issue 5, item 11): write the quick profile's baselines, then N runs of
# suites/perf against them with unchanged code and N runs each with the kernel slowed by 5% and 10%
# (test-only $MOETUNE_TEST_SLOWDOWN in kernels/runner.py), interleaved so that a run cut short by the
# deadline still has every kind.
#
#   bash benchmarks/gpu_gate_quality.sh [N] [FIRST]    # runs FIRST..N of each kind (default 10, 1)
#
# FIRST=1 first rewrites the baselines (--moetune-update-baselines=all; REBASE=0 keeps them).
# $SLOWDOWNS (default "0 0.05 0.10") picks the kinds. $DEADLINE (seconds of this script, default 540)
# stops starting new runs. The threshold is this repo's (pyproject.toml). State that later calls
# reuse (tuning cache, baselines) lives in $MOETUNE_GPU_STATE (default .gpu-state, git-ignored: carry
# it). Reports land in $OUT/r; benchmarks/summarize_gate_quality.py tabulates them.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
runs=${1:-10}; first=${2:-1}; deadline=${DEADLINE:-540}
OUT=${OUT:-out}; state=${MOETUNE_GPU_STATE:-.gpu-state}; mkdir -p "$OUT/r" "$state/baselines"
source benchmarks/device_install.sh
common=(--moetune -p no:cacheprovider -q suites/perf --moetune-cache "$state/gate-quality-cache.json"
        --moetune-baselines "$state/baselines")
if [ "$first" = 1 ] && [ "${REBASE:-1}" = 1 ]; then
  timeout 300 python3 -m pytest "${common[@]}" --moetune-update-baselines=all \
      --moetune-report "$OUT/r/baseline-run" 2>&1 | tail -2
fi
for i in $(seq "$first" "$runs"); do
  for slow in ${SLOWDOWNS:-0 0.05 0.10}; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "deadline ${deadline}s: stopped before run $i"; break 2; fi
    kind=$([ "$slow" = 0 ] && echo unchanged || echo "slow$slow")
    MOETUNE_TEST_SLOWDOWN=$slow timeout 200 python3 -m pytest "${common[@]}" \
        --moetune-report "$OUT/r/$kind-$i" 2>&1 | tail -1
  done
done
echo "gate quality: ${SECONDS}s"
python3 benchmarks/summarize_gate_quality.py "$OUT/r" | tee "$OUT/r/summary.md"
rm -f "$OUT"/r/*.lock "$OUT"/r/*.md.tmp "$state"/*.lock
tar -czf "$OUT/quality.tar.gz" -C "$OUT" r
