#!/usr/bin/env bash
# One device call: where the fp8 gate/up's time goes. `benchmarks/fp8_gate_up_probe.py` (the
# persistent Gluon gate/up with one part of its work left out, all variants in one process) with
# $PROBE_ARGS, then Nsight Compute profiles (`benchmarks/gpu_profile.sh`, clocks left alone) of the
# variants in $NCU_KERNELS at the point $NCU_ARGS names. Results in $OUT/probe/ (the profiles'
# details pages and per-SASS-line stall samples tarred as prof.tar.gz); each step gets what is left
# of $DEADLINE (default 570 s).
#
#   DEADLINE=500 PROBE_ARGS="--tokens 4096,16384" NCU_KERNELS="committed non-persistent" \
#       NCU_ARGS="--cases mixtral-8x7b-ep1 --tokens 4096" bash benchmarks/gpu_fp8_probe.sh
set -uo pipefail
RESULTS=probe TESTS=0
source benchmarks/device_steps.sh
read -ra probe_args <<< "${PROBE_ARGS:-}"
timeout "$(left)" python3 benchmarks/fp8_gate_up_probe.py "${probe_args[@]}" --json "$RES/probe.json" \
    > "$RES/probe.log" 2>&1
echo "probe: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"; tail -8 "$RES/probe.log"
if [ -n "${NCU_KERNELS:-}" ]; then
  OUT="$RES/ncu" PROFILE_SCRIPT=benchmarks/fp8_gate_up_probe.py KERNEL_REGEX=gate_up \
      PROFILE_ARGS="${NCU_ARGS:-}" timeout "$(left)" bash benchmarks/gpu_profile.sh "$NCU_KERNELS"
  echo "ncu: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"
  python3 benchmarks/ncu_summary.py "$RES"/ncu/prof/*-sass.csv.gz --top 8 > "$RES/ncu_summary.txt" 2>&1
  for f in "$RES"/ncu/prof/*.txt; do
    echo "== $f"; grep -E "Duration|SM Frequency|Memory Throughput|DRAM Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Issue Slots Busy|highest-utilized|L2 Hit Rate|One or More Eligible" "$f" | head -14
  done > "$RES/ncu_headline.txt"
  cat "$RES/ncu_headline.txt"
  tar -C "$RES/ncu" -czf "$RES/prof.tar.gz" --exclude='*.ncu-rep' prof && rm -rf "$RES/ncu"
fi
