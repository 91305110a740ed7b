#!/usr/bin/env bash
# The working tree's Gluon fp8 GEMMs against another revision's, per GEMM, in one process
# (benchmarks/ab_gluon_gemms.py), after the working tree's fp8/Gluon GPU tests. Make the old
# revision first (`bash benchmarks/make_kernels_rev.sh main`) and carry [".ab"]. With LAYER=1 the
# working tree's layer benchmark follows (bf16 and fp8 defaults at T = $TOKENS, default 4096,16384,
# the four cases). Results under $OUT/abg/; each step gets what is left of $DEADLINE
# (default 570 s).
#
#   bash benchmarks/gpu_ab_gemms.sh [ARGS for ab_gluon_gemms.py ...]
set -uo pipefail
RESULTS=abg; TESTS_K="fp8 or gluon"
source benchmarks/device_steps.sh
PYTHONPATH=.:.ab timeout "$(left)" python3 benchmarks/ab_gluon_gemms.py --json "$RES/ab.json" "$@" \
    2>&1 | tee "$RES/ab.log" | cut -c1-400
echo "ab: rc ${PIPESTATUS[0]}, $SECONDS s"
if [ "${LAYER:-0}" = 1 ]; then
  tokens=${TOKENS:-4096,16384}
  timeout "$(left)" python3 benchmarks/bench_fused_moe.py \
      --cases deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1 --tokens "$tokens" \
      --fp8-tokens "$tokens" --no-sweep --json "$RES/layer.json" > "$RES/layer.log" 2>&1
  echo "layer: rc $?, $SECONDS s"; tail -25 "$RES/layer.log"
fi
