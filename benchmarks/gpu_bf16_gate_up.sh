#!/usr/bin/env bash
# The 16-bit persistent Gluon gate/up on the device: the bf16/Gluon GPU tests, then the bf16 layer's
# default beside the same default with the Gluon gate/up and with Triton's down, same rounds
# (bench_fused_moe.py --gate-up-twin --down-twin), with the stage breakdown and the fp8 layer at the
# same points. Results under $OUT/bg/; each step gets what is left of $DEADLINE (570 s).
#
#   bash benchmarks/gpu_bf16_gate_up.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; deadline=${DEADLINE:-570}
mkdir -p "$OUT/bg"
left() { echo $((deadline - SECONDS)); }
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/bg/gpu.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout "$(left)" python3 -m pytest suites/kernels/test_correctness_gpu.py -k "bf16 or gluon" -q \
      -p no:cacheprovider > "$OUT/bg/tests.log" 2>&1
  echo "tests: rc $?, $SECONDS s"; tail -3 "$OUT/bg/tests.log"
fi
tokens=${TOKENS:-4096,16384}
timeout "$(left)" python3 benchmarks/bench_fused_moe.py \
    --cases deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1 --tokens "$tokens" \
    --fp8-tokens "${FP8_TOKENS-$tokens}" --no-sweep --gate-up-twin --down-twin --breakdown \
    --json "$OUT/bg/layer.json" > "$OUT/bg/layer.log" 2>&1
echo "layer: rc $?, $SECONDS s"; grep -E "twin|^\|" "$OUT/bg/layer.log" | tail -40
