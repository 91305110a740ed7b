#!/usr/bin/env bash
# One device call for programmatic dependent launch (kernels/pdl.py): its GPU tests (PDL and plain
# launches give the same bits, eager and replayed), then `benchmarks/pdl_ab.py` (the layer with and
# without PDL, same run) with $PDL_ARGS, then, with KERNELS=1, the whole GPU kernel suite (PDL on, as
# by default), and with TABLE_ARGS the issue's table (`benchmarks/bench_fused_moe.py $TABLE_ARGS`, PDL
# on). Results in $OUT/pdl/; each step gets what is left of $DEADLINE (default 570 s).
#
#   DEADLINE=560 KERNELS=1 bash benchmarks/gpu_pdl.sh
#   PDL_ARGS="--cases qwen3-30b-a3b-ep1 --tokens 1,16" bash benchmarks/gpu_pdl.sh
#   PDL_ARGS="--tokens 256,1024" TABLE_ARGS="--no-sweep --tokens 4096" bash benchmarks/gpu_pdl.sh
set -uo pipefail
RESULTS=pdl TESTS=1 TESTS_K=pdl
source benchmarks/device_steps.sh
read -ra ab_args <<< "${PDL_ARGS:-}"
timeout "$(left)" python3 benchmarks/pdl_ab.py "${ab_args[@]}" --json "$RES/pdl_ab.json" > "$RES/pdl_ab.log" 2>&1
echo "pdl_ab: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"
cat "$RES/pdl_ab.log"
if [ "${KERNELS:-0}" = 1 ]; then
  timeout "$(left)" python3 -m pytest suites/kernels -q -p no:cacheprovider > "$RES/kernels.log" 2>&1
  echo "kernel suite: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"; tail -5 "$RES/kernels.log"
fi
if [ -n "${TABLE_ARGS:-}" ]; then
  read -ra table_args <<< "$TABLE_ARGS"
  timeout "$(left)" python3 benchmarks/bench_fused_moe.py "${table_args[@]}" --json "$RES/table.json" \
      > "$RES/table.log" 2>&1
  echo "table: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"; cat "$RES/table.log"
fi
