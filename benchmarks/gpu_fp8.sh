#!/usr/bin/env bash
# Issue 3's fp8 block-scale layer on one H100, in one call: with MICRO=1 first the Gluon gate/up
# against Triton's (bit-identity and TFLOP/s of both schedules, 4000 tokens); the fp8 GPU correctness
# tests (every model shape x T through the default tactic, which takes the Gluon tiles on Hopper, and
# every Gluon tactic of two prefill points); then the kernels benchmark for $CASES (default the two
# DEP cases): bf16 and fp8 side by side, default and swept best (SWEEP=0: defaults only), peer and
# roofline from the same run; BREAKDOWN=1 adds each layer's stage prefixes (align, x quantization,
# gate/up, down, combine); TWIN=1 also times the fp8 default with its Gluon gate/up's sorted_x
# flipped, in the same rounds. Each step gets what is left of $DEADLINE (seconds of this script,
# default 570). Results: $OUT/fp8.tar.gz.
#
#   bash benchmarks/gpu_fp8.sh [TOKENS]    # TOKENS: the benchmark's T list, default 4096,16384
#   MICRO=1 SWEEP=0 BREAKDOWN=1 CASES=deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1 \
#       bash benchmarks/gpu_fp8.sh         # check a kernel change: bit-identity, tests, the 8 points
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT/p"; deadline=${DEADLINE:-570}; tokens=${1:-4096,16384}
left() { echo $((deadline - SECONDS)); }
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/p/gpu.txt"
if [ "${MICRO:-0}" = 1 ]; then
  timeout "$(left)" python3 benchmarks/gluon_fp8_moe.py --gpu --tokens 4000 2>&1 | tee "$OUT/p/gate-up.log" \
      | grep -v "triton-main bm128"
fi
timeout "$(left)" python3 -m pytest suites/kernels/test_correctness_gpu.py -k "fp8 or gluon" -q \
    -p no:cacheprovider --durations=5 2>&1 | tee "$OUT/p/tests.log" | tail -15
echo "fp8 GPU tests: rc ${PIPESTATUS[0]}, $SECONDS s" | tee -a "$OUT/p/steps.txt"
extra=(); [ "${SWEEP:-1}" = 0 ] && extra=(--no-sweep)
[ "${BREAKDOWN:-0}" = 1 ] && extra+=(--breakdown)
[ "${TWIN:-0}" = 1 ] && extra+=(--sorted-twin)
timeout "$(left)" python3 benchmarks/bench_fused_moe.py --cases "${CASES:-deepseek-r1-dep8,qwen3-235b-a22b-dep2}" \
    --tokens "$tokens" --fp8-tokens "$tokens" "${extra[@]}" --json "$OUT/p/bench.json" 2>&1 \
    | tee "$OUT/p/bench.log"
echo "bench: rc ${PIPESTATUS[0]}, $SECONDS s" | tee -a "$OUT/p/steps.txt"
tar -czf "$OUT/fp8.tar.gz" -C "$OUT" p
