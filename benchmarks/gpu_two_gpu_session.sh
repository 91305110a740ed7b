#!/usr/bin/env bash
# One call on a 2-GPU kind (issues 6 and 7), to make the most of a device budget:
#   1. at the same time: the fidelity suite on GPU 1 (gpu_full_profile.sh, FIDELITY=1) and the gated
#      suite tuned on GPU 0 alone (`-n 0`); the two share nothing but the host;
#   2. then, both GPUs free: the same gated suite with `-n 2`;
#   3. the distributed suite on both GPUs (NCCL), if $DEADLINE (seconds, default 570) leaves time.
#
#   bash benchmarks/gpu_two_gpu_session.sh [K]    # K: the -k selection of suites/perf cases
#
# $FIDELITY_K selects fidelity cases (e.g. "dep2 or dep8"); $DEADLINE defaults to 570.
#
# Everything lands in $OUT/session.tar.gz; the summaries are printed.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; deadline=${DEADLINE:-570}
select=${1:-mixtral-8x7b or qwen3-30b-a3b}
source benchmarks/device_install.sh  # once here: the scripts below find it installed (two at once would race)
mkdir -p "$OUT/fid" "$OUT/n0" "$OUT/n2" "$OUT/d2"
CUDA_VISIBLE_DEVICES=1 FIDELITY=1 FIDELITY_K=${FIDELITY_K:-} DEADLINE=$((deadline - 145)) OUT="$OUT/fid" \
    bash benchmarks/gpu_full_profile.sh > "$OUT/fid/log.txt" 2>&1 &
fidelity=$!
RANKS= WORKERS=0 OUT="$OUT/n0" bash benchmarks/gpu_distributed.sh full "$select" > "$OUT/n0/log.txt" 2>&1
wait "$fidelity"
echo "fidelity and -n 0 done at ${SECONDS}s"
RANKS= WORKERS=2 DEADLINE=$((deadline - SECONDS - 60)) OUT="$OUT/n2" \
    bash benchmarks/gpu_distributed.sh full "$select" > "$OUT/n2/log.txt" 2>&1
echo "-n 2 done at ${SECONDS}s"
if [ $((SECONDS + 90)) -lt "$deadline" ]; then
  RANKS=2 WORKERS= OUT="$OUT/d2" bash benchmarks/gpu_distributed.sh > "$OUT/d2/log.txt" 2>&1
else
  echo "deadline: skipped the distributed suite"
fi
tail -n 45 "$OUT/fid/log.txt"; cat "$OUT"/n0/parallel.txt "$OUT"/n2/parallel.txt "$OUT"/d2/distributed.txt 2>/dev/null
tar -czf "$OUT/session.tar.gz" -C "$OUT" fid n0 n2 d2 && rm -rf "$OUT/fid" "$OUT/n0" "$OUT/n2" "$OUT/d2"
echo "session: ${SECONDS}s"
