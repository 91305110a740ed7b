#!/usr/bin/env bash
# Nsight Compute profiles of the Gluon fp8 MoE GEMMs on one H100 (deepseek-r1 DEP8, 4000 tokens):
# one launch of each kernel (after a warm-up launch) with the throughput, scheduler, warp-stall and
# source-counter sections, clocks left alone (--clock-control none, as the device notes ask).
# Results: $OUT/prof/<kernel>.txt (details page), <kernel>-sass.csv.gz (per-SASS-line stall samples)
# and <kernel>.ncu-rep. `python3 benchmarks/ncu_summary.py $OUT/prof/*-sass.csv.gz` summarizes the
# stall samples by reason, opcode and line.
#
#   bash benchmarks/gpu_profile.sh [KERNELS]   # default: wide halves down128 down64
#
# $PROFILE_SCRIPT (default benchmarks/profile_gluon_fp8.py) is the launcher, $KERNEL_REGEX (default
# gluon) the kernel names ncu profiles and $PROFILE_ARGS more launcher options, e.g. the 16-bit
# gate/ups: PROFILE_SCRIPT=benchmarks/profile_bf16_gate_up.py KERNEL_REGEX=gate_up \
#   bash benchmarks/gpu_profile.sh "triton-sorted gluon-sorted gluon-gather"
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT/prof"
kernels=${1:-wide halves down128 down64}
sections="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
          --section SchedulerStats --section WarpStateStats --section SourceCounters --section Occupancy
          --section LaunchStats"
for k in $kernels; do
    # shellcheck disable=SC2086
    timeout 240 ncu --clock-control none -k "regex:${KERNEL_REGEX:-gluon}" --launch-skip 1 --launch-count 1 \
        $sections -f -o "$OUT/prof/$k" python3 "${PROFILE_SCRIPT:-benchmarks/profile_gluon_fp8.py}" \
        --kernel "$k" ${PROFILE_ARGS:-} 2>&1 | tail -3
    ncu --import "$OUT/prof/$k.ncu-rep" --page details > "$OUT/prof/$k.txt" 2>&1
    ncu --import "$OUT/prof/$k.ncu-rep" --page source --csv --print-source sass 2>/dev/null \
        | gzip > "$OUT/prof/$k-sass.csv.gz"
    echo "== $k: $(wc -l < "$OUT/prof/$k.txt") lines of details"
done
