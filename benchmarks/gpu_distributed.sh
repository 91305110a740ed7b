#!/usr/bin/env bash
# Issue 7 on a multi-GPU kind (nvidia-h100-x2 / -x4): the distributed suite over NCCL, then parallel
# tuning wall time of the gated suite on 1 GPU vs all GPUs (each from a cold tuning and Triton cache).
# NVLink multicast stays off (the device tool requires it).
#
#   bash benchmarks/gpu_distributed.sh [PROFILE] [K]    # K: a -k selection of suites/perf cases
#
# e.g. `bash benchmarks/gpu_distributed.sh full "mixtral-8x7b or qwen3-30b-a3b"` (50 cases, 191 s
# on one H100 in device run 14): long enough that per-worker start-up does not dominate.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-out}; mkdir -p "$OUT/r"
profile=${1:-quick}; select=(); [ -n "${2:-}" ] && select=(-k "$2")
gpus=$(nvidia-smi -L | grep -c '^GPU ')
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -1
echo "gpus: $gpus"
timeout 300 torchrun --standalone --nproc-per-node "$gpus" -m pytest suites/distributed -q -p no:cacheprovider 2>&1 | tail -4
for workers in 0 "$gpus"; do
  rm -rf "$OUT/r/cache-$workers.json" /tmp/triton-$workers
  start=$EPOCHREALTIME
  TRITON_CACHE_DIR=/tmp/triton-$workers timeout 500 python3 -m pytest --moetune --moetune-profile "$profile" suites/perf \
      "${select[@]}" -q -p no:cacheprovider -n "$workers" --moetune-cache "$OUT/r/cache-$workers.json" \
      --moetune-report "$OUT/r/perf-n$workers" 2>&1 | tail -2
  end=$EPOCHREALTIME
  echo "suites/perf --moetune-profile $profile ${2:+-k '$2' }with -n $workers: $(python3 -c "print(round($end - $start, 1))") s wall"
done | tee "$OUT/r/parallel.txt"
rm -f "$OUT"/r/*.lock
