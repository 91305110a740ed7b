#!/usr/bin/env bash
# The 16-bit persistent Gluon gate/up on the device: the bf16/Gluon GPU tests, then the bf16 layer's
# default beside the same default with the Gluon gate/up and with Triton's down, same rounds
# (bench_fused_moe.py --gate-up-twin --down-twin), with the stage breakdown and the fp8 layer at the
# same points. Results under $OUT/bg/; each step gets what is left of $DEADLINE (570 s).
#
#   bash benchmarks/gpu_bf16_gate_up.sh
set -uo pipefail
RESULTS=bg; TESTS_K="bf16 or gluon"
source benchmarks/device_steps.sh
tokens=${TOKENS:-4096,16384}
timeout "$(left)" python3 benchmarks/bench_fused_moe.py \
    --cases deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1 --tokens "$tokens" \
    --fp8-tokens "${FP8_TOKENS-$tokens}" --no-sweep --gate-up-twin --down-twin --breakdown \
    --json "$RES/layer.json" > "$RES/layer.log" 2>&1
echo "layer: rc $?, $SECONDS s"; grep -E "twin|^\|" "$RES/layer.log" | tail -40
