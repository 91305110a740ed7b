#!/usr/bin/env bash
# The fp8 persistent Gluon gate/up gathering x's rows (branch fp8-gather-gate-up) on the device: the
# fp8/Gluon GPU tests (every Gluon tactic of the fp8 space against the reference, the gathering
# persistent gate/up against its sorted twin's bits), then both layers' defaults with the fp8 default
# beside its twin with the other x layout, same rounds (bench_fused_moe.py --sorted-twin: at block_m
# 128 the persistent sorted default against the persistent gathering tile, which quantizes x in
# token order instead of into the alignment's), with the stage breakdown. Results under $OUT/fg/;
# each step gets what is left of $DEADLINE (570 s).
#
#   bash benchmarks/gpu_fp8_gather.sh
set -uo pipefail
RESULTS=fg; TESTS_K="fp8 and gluon"
source benchmarks/device_steps.sh
tokens=${TOKENS:-4096,16384}
timeout "$(left)" python3 benchmarks/bench_fused_moe.py \
    --cases deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1 --tokens "$tokens" \
    --fp8-tokens "$tokens" --no-sweep --sorted-twin --breakdown --json "$RES/layer.json" > "$RES/layer.log" 2>&1
echo "layer: rc $?, $SECONDS s"; grep -E "twin|^\|" "$RES/layer.log" | tail -40
