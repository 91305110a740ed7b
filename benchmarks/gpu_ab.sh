#!/usr/bin/env bash
# Two kernel trees on one GPU in one call: tree A, a copy of another commit under .ab/ (made here by
# `mkdir -p .ab/main && git archive main | tar -x -C .ab/main`, carried with `carry: [".ab"]`),
# against the working tree B. The steps alternate A, B so that clock or thermal drift lands on both:
# the Gluon gate/up micro-benchmark (bit-identity to Triton's kernel, TFLOP/s, 4000 tokens), then
# the layer benchmark for $CASES at the given token counts (defaults only, with the fp8 stage
# breakdown). With TESTS=1 B's fp8 GPU tests run first; QUANT=1 adds B's quantization micro-benchmark.
# Each step gets what is left of $DEADLINE (default 570 s). Results: $OUT/ab.tar.gz.
#
#   bash benchmarks/gpu_ab.sh .ab/main [TOKENS]    # TOKENS: default 4096,16384
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-out}; a=${1:?usage: gpu_ab.sh TREE_A [TOKENS]}; tokens=${2:-4096,16384}
deadline=${DEADLINE:-570}; cases=${CASES:-deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1}
mkdir -p "$OUT/ab"
left() { echo $((deadline - SECONDS)); }
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/ab/gpu.txt"
# step TREE NAME SCRIPT ARGS...: run a Python script inside TREE with that tree's kernels first on the path
step() {
  local tree=$1 name=$2; shift 2
  (cd "$tree" && PYTHONPATH=. timeout "$(left)" python3 "$@") > "$OUT/ab/$name.log" 2>&1
  echo "$name: rc $?, $SECONDS s" | tee -a "$OUT/ab/steps.txt"
}
if [ "${TESTS:-0}" = 1 ]; then
  timeout "$(left)" python3 -m pytest suites/kernels/test_correctness_gpu.py -k "fp8 or gluon" -q \
      -p no:cacheprovider > "$OUT/ab/tests-b.log" 2>&1
  echo "tests-b: rc $?, $SECONDS s" | tee -a "$OUT/ab/steps.txt"; tail -3 "$OUT/ab/tests-b.log"
fi
for tree in "$a" .; do
  name=$([ "$tree" = . ] && echo b || echo a)
  step "$tree" "micro-$name" benchmarks/gluon_fp8_moe.py --gpu --tokens 4000
done
for tree in "$a" .; do
  name=$([ "$tree" = . ] && echo b || echo a)
  step "$tree" "bench-$name" benchmarks/bench_fused_moe.py --cases "$cases" --tokens "$tokens" \
      --fp8-tokens "$tokens" --no-sweep --breakdown --json "$OUT/ab/bench-$name.json"
done
[ "${QUANT:-0}" = 1 ] && step . quant-b benchmarks/quant_sorted_bench.py
grep -h "TFLOP/s" "$OUT"/ab/micro-*.log | cut -c1-160
grep -h "fp8:" "$OUT"/ab/bench-*.log
tar -czf "$OUT/ab.tar.gz" -C "$OUT" ab
