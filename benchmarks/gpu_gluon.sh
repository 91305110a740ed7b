#!/usr/bin/env bash
# Issue 3's Gluon fp8 prototypes on one H100, in one call: the block-scaled fp8 GEMM
# (benchmarks/gluon_fp8_gemm.py: correctness against the fp32 reference, then timings beside
# torch._scaled_mm), the MoE gate/up (benchmarks/gluon_fp8_moe.py) and the MoE down
# (benchmarks/gluon_fp8_down.py), each against main's Triton kernel on the same alignment, deepseek-r1
# DEP8. The GEMM gets a third of $DEADLINE (seconds of this script, default 540), the gate/up half of
# what is left, the down the rest. Logs: $OUT/gluon-{gemm,moe,down}.log.
#
#   DEADLINE=<device seconds left - 90> bash benchmarks/gpu_gluon.sh [TOKENS]
#
# TOKENS per rank for the MoE runs, default 4000: 1000 rows per local expert under balanced routing,
# so every expert's last row block has 24 padding rows (the gather of token 0 and the masked stores
# get exercised; 4096 would fill every block exactly).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT"; deadline=${DEADLINE:-540}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout $((deadline / 3)) python3 benchmarks/gluon_fp8_gemm.py --gpu 2>&1 | tee "$OUT/gluon-gemm.log"
echo "gluon GEMM: rc ${PIPESTATUS[0]}, $SECONDS s"
timeout $(((deadline - SECONDS) / 2)) python3 benchmarks/gluon_fp8_moe.py --gpu --tokens "${1:-4000}" 2>&1 \
    | tee "$OUT/gluon-moe.log"
echo "gluon MoE gate/up: rc ${PIPESTATUS[0]}, $SECONDS s"
timeout $((deadline - SECONDS)) python3 benchmarks/gluon_fp8_down.py --gpu --tokens "${1:-4000}" 2>&1 \
    | tee "$OUT/gluon-down.log"
echo "gluon MoE down: rc ${PIPESTATUS[0]}, $SECONDS s"
