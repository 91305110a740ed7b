#!/usr/bin/env bash
# The 16-bit Gluon down on the device: its GPU tests and the bf16 tests, then the per-GEMM A/B
# against Triton's down (benchmarks/ab_bf16_down.py), then the bf16 layer with the Gluon down as the
# default beside the default with Triton's down, same rounds (bench_fused_moe.py --down-twin), with
# the stage breakdown. Results under $OUT/bd/; each step gets what is left of $DEADLINE (570 s).
#
#   bash benchmarks/gpu_bf16_down.sh [ARGS for ab_bf16_down.py ...]
set -uo pipefail
RESULTS=bd; TESTS_K="bf16 or gluon"
source benchmarks/device_steps.sh
timeout "$(left)" python3 benchmarks/ab_bf16_down.py --json "$RES/ab.json" "$@" 2>&1 | tee "$RES/ab.log" \
    | cut -c1-600
echo "ab: rc ${PIPESTATUS[0]}, $SECONDS s"
if [ "${LAYER:-1}" = 1 ]; then
  timeout "$(left)" python3 benchmarks/bench_fused_moe.py \
      --cases deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1 \
      --tokens "${TOKENS:-4096,16384}" --fp8-tokens "${FP8_TOKENS:-}" --no-sweep --down-twin --breakdown \
      --json "$RES/layer.json" > "$RES/layer.log" 2>&1
  echo "layer: rc $?, $SECONDS s"; grep -v "^  fp8" "$RES/layer.log" | tail -30
fi
