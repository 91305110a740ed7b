#!/usr/bin/env bash
# Issue 3's fp8 block-scale layer on one H100, in one call: the fp8 GPU correctness tests (every model
# shape x T through the default tactic, which takes the Gluon tiles on Hopper, and every Gluon tactic
# of two prefill points), then the kernels benchmark for the two DEP cases: bf16 and fp8 side by side,
# default and swept best (Triton and Gluon tiles), peer and roofline from the same run. Each step gets
# what is left of $DEADLINE (seconds of this script, default 570). Results: $OUT/fp8.tar.gz.
#
#   bash benchmarks/gpu_fp8.sh [TOKENS]    # TOKENS: the benchmark's T list, default 4096,16384
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT/p"; deadline=${DEADLINE:-570}; tokens=${1:-4096,16384}
left() { echo $((deadline - SECONDS)); }
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/p/gpu.txt"
timeout "$(left)" python3 -m pytest suites/kernels/test_correctness_gpu.py -k "fp8 or gluon" -q \
    -p no:cacheprovider --durations=5 2>&1 | tee "$OUT/p/tests.log" | tail -15
echo "fp8 GPU tests: rc ${PIPESTATUS[0]}, $SECONDS s" | tee -a "$OUT/p/steps.txt"
timeout "$(left)" python3 benchmarks/bench_fused_moe.py --cases deepseek-r1-dep8,qwen3-235b-a22b-dep2 \
    --tokens "$tokens" --fp8-tokens "$tokens" --json "$OUT/p/bench.json" 2>&1 | tee "$OUT/p/bench.log"
echo "bench: rc ${PIPESTATUS[0]}, $SECONDS s" | tee -a "$OUT/p/steps.txt"
tar -czf "$OUT/fp8.tar.gz" -C "$OUT" p
