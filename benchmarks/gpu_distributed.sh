#!/usr/bin/env bash
# Issue 7 on a multi-GPU kind (nvidia-h100-x2 / -x4): the distributed suite over NCCL (correctness,
# model check, rank consensus on tactics tuned on each rank's real dispatched rows), then the wall
# time of the gated suite tuned with 0 (one GPU, no xdist), 2, ... xdist workers, one GPU each, each
# from a cold tuning and Triton cache. NVLink multicast stays off (the device tool requires it).
#
#   bash benchmarks/gpu_distributed.sh [PROFILE] [K]    # K: a -k selection of suites/perf cases
#
# $RANKS (default: all GPUs; empty: none) lists the world sizes of the distributed suite, each on the first N GPUs;
# $WORKERS (default "0 <all GPUs>"; empty: none) the worker counts of the parallel-tuning comparison, e.g. on four
# GPUs `RANKS="2 4" WORKERS="0 2 4"`. A parallel run starts only if the 1-GPU run's wall time divided by
# its workers (x1.3, +30 s) still fits $DEADLINE (seconds of this script, default 560).
#
# e.g. `bash benchmarks/gpu_distributed.sh full "mixtral-8x7b or qwen3-30b-a3b"` (50 cases, 191 s
# on one H100 in device run 14): long enough that per-worker start-up does not dominate.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-out}; mkdir -p "$OUT/r"; deadline=${DEADLINE:-560}
profile=${1:-quick}; select=(); [ -n "${2:-}" ] && select=(-k "$2")
gpus=$(nvidia-smi -L | grep -c '^GPU ')
first() { seq -s, 0 $(($1 - 1)); }  # CUDA_VISIBLE_DEVICES of the first N GPUs
source benchmarks/device_install.sh
echo "gpus: $gpus"
for ranks in ${RANKS-$gpus}; do
  start=$SECONDS
  CUDA_VISIBLE_DEVICES=$(first "$ranks") MOETUNE_DISTRIBUTED_OUT="$OUT/r/ranks$ranks" timeout 300 \
      torchrun --standalone --nproc-per-node "$ranks" -m pytest suites/distributed -q -p no:cacheprovider \
      --durations=3 2>&1 | tail -8
  echo "distributed suite on $ranks GPUs: $((SECONDS - start)) s wall"
done | tee "$OUT/r/distributed.txt"
one_gpu_s=0
for workers in ${WORKERS-0 $gpus}; do
  need=$(python3 -c "print(int($one_gpu_s / max(1, $workers) * 1.3 + 30))")
  if [ $((SECONDS + need)) -ge "$deadline" ]; then echo "deadline: skipped -n $workers (~${need}s)"; continue; fi
  rm -rf "$OUT/r/cache-$workers.json" "/tmp/triton-$workers"
  start=$EPOCHREALTIME
  CUDA_VISIBLE_DEVICES=$(first $((workers > 0 ? workers : 1))) TRITON_CACHE_DIR=/tmp/triton-$workers \
      timeout $((deadline - SECONDS)) python3 -m pytest --moetune --moetune-profile "$profile" suites/perf \
      "${select[@]}" -q -p no:cacheprovider -n "$workers" --moetune-cache "$OUT/r/cache-$workers.json" \
      --moetune-report "$OUT/r/perf-n$workers" --durations=10 2>&1 | tee "$OUT/r/perf-n$workers.log" | tail -2
  rc=${PIPESTATUS[0]}; end=$EPOCHREALTIME
  [ "$workers" = 0 ] && one_gpu_s=$(python3 -c "print($end - $start)")
  echo "suites/perf --moetune-profile $profile ${2:+-k '$2' }with -n $workers: $(python3 -c "print(round($end - $start, 1))") s wall, pytest rc $rc"
  # rc 0: passed, 1: gate failures (timed all the same); anything else measured nothing
  [ "$rc" -le 1 ] || { echo "NOT A TIMING: pytest rc $rc"; tail -5 "$OUT/r/perf-n$workers.log"; }
done | tee "$OUT/r/parallel.txt"
rm -f "$OUT"/r/*.lock
cp "$OUT/r/distributed.txt" "$OUT/r/parallel.txt" "$OUT/"
tar -czf "$OUT/distributed.tar.gz" -C "$OUT" r && rm -rf "$OUT/r"
