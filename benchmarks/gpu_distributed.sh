#!/usr/bin/env bash
# Issue 7 on a multi-GPU kind (nvidia-h100-x2 / -x4): the distributed suite over NCCL, then parallel
# tuning wall time of the gated suite on 1 GPU vs all GPUs (each from a cold tuning and Triton cache).
# NVLink multicast stays off (the device tool requires it).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-out}; mkdir -p "$OUT/r"
profile=${1:-quick}
gpus=$(nvidia-smi -L | grep -c '^GPU ')
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -1
echo "gpus: $gpus"
timeout 300 torchrun --standalone --nproc-per-node "$gpus" -m pytest suites/distributed -q -p no:cacheprovider 2>&1 | tail -4
for workers in 0 "$gpus"; do
  rm -rf "$OUT/r/cache-$workers.json" /tmp/triton-$workers
  start=$(date +%s.%N)
  TRITON_CACHE_DIR=/tmp/triton-$workers timeout 900 python3 -m pytest --moetune --moetune-profile "$profile" suites/perf \
      -q -p no:cacheprovider -n "$workers" --moetune-cache "$OUT/r/cache-$workers.json" \
      --moetune-report "$OUT/r/perf-n$workers" 2>&1 | tail -2
  end=$(date +%s.%N)
  echo "suites/perf --moetune-profile $profile with -n $workers: $(echo "$end - $start" | bc) s wall"
done | tee "$OUT/r/parallel.txt"
rm -f "$OUT"/r/*.lock
