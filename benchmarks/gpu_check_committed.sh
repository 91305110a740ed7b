#!/usr/bin/env bash
# One device call that checks main as committed, as a CI runner would: the quick gate against the
# committed baselines (a fresh tuning cache; on a card other than the baselines' each case says so),
# then the GPU kernel suite (not with KERNELS=0). With WORKERS=N (one per GPU) the gate runs under
# pytest-xdist `-n N`, after a run with one worker more than there are GPUs, which must be refused
# before any worker starts. Logs and the gate's report in $OUT/check/; each step gets what is left
# of $DEADLINE (default 570 s).
#
#   DEADLINE=500 bash benchmarks/gpu_check_committed.sh
#   WORKERS=2 KERNELS=0 DEADLINE=300 bash benchmarks/gpu_check_committed.sh   # on a 2-GPU kind
set -uo pipefail
RESULTS=check TESTS=0 TESTS_K=""
source benchmarks/device_steps.sh
nvidia-smi --query-gpu=serial,uuid --format=csv,noheader | tee -a "$RES/gpu.txt"
xdist=()
if [ -n "${WORKERS:-}" ]; then
  xdist=(-n "$WORKERS")
  timeout "$(left)" python3 -m pytest --moetune -n $((WORKERS + 1)) -p no:cacheprovider suites/perf \
      > "$RES/too-many-workers.log" 2>&1
  echo "gate with $((WORKERS + 1)) workers: rc $? (4: usage error), $SECONDS s" | tee -a "$RES/steps.txt"
  cat "$RES/too-many-workers.log"
fi
timeout "$(left)" python3 -m pytest --moetune -p no:cacheprovider --moetune-cache "$RES/gate-cache.json" \
    "${xdist[@]}" suites/perf --moetune-report "$RES/gate" > "$RES/gate.log" 2>&1
echo "gate: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"
grep -m3 -i "card" "$RES/gate.log"; grep -A16 "moetune gate ===" "$RES/gate.log"
if [ "${KERNELS:-1}" = 1 ]; then
  timeout "$(left)" python3 -m pytest suites/kernels -q -p no:cacheprovider > "$RES/kernels.log" 2>&1
  echo "kernel suite: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"; tail -5 "$RES/kernels.log"
fi
rm -f "$RES"/*.lock
