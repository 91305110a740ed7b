#!/usr/bin/env bash
# The bf16 sorted-x gate/up on one GPU in one call (session 12, runs 17 and 18): the sorted-x GPU
# tests (bit-identity of the bf16 sorted gate/up to its gathered twin, and every tactic of the bf16
# space), then the layer benchmark for $CASES at $TOKENS with the bf16 default and its twin with the
# other x layout timed in the same interleaved rounds (no sweep, bf16 only). Each step gets what is left of $DEADLINE (default 570 s).
# Results: $OUT/sx/{tests.log,bench.log,bench.json,setuptools.txt}.
#
#   bash benchmarks/gpu_sorted_x.sh [TOKENS]    # TOKENS: default 1024,4096,16384
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-out}; tokens=${1:-1024,4096,16384}; deadline=${DEADLINE:-570}
cases=${CASES:-deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1}
mkdir -p "$OUT/sx"
left() { echo $((deadline - SECONDS)); }
python3 -m pip show setuptools 2>/dev/null | head -2 > "$OUT/sx/setuptools.txt"
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/sx/gpu.txt"
timeout "$(left)" python3 -m pytest suites/kernels/test_correctness_gpu.py -k "sorted_x or every_tactic" \
    -q -p no:cacheprovider > "$OUT/sx/tests.log" 2>&1
echo "tests: rc $?, $SECONDS s"; tail -3 "$OUT/sx/tests.log"
timeout "$(left)" python3 benchmarks/bench_fused_moe.py --cases "$cases" --tokens "$tokens" --fp8-tokens "" \
    --no-sweep --sorted-twin --json "$OUT/sx/bench.json" > "$OUT/sx/bench.log" 2>&1
echo "bench: rc $?, $SECONDS s"; grep -E "sorted_twin|^#|case" "$OUT/sx/bench.log" | head -40
