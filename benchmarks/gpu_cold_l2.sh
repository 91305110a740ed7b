#!/usr/bin/env bash
# Cold-L2 tuning on the GPU (issue 4, item 4): the GPU test that cold timing reads weights from HBM,
# then `moetune tune --cold-l2` over the full bucket set of qwen3-235b-a22b DEP2 bf16 beside the
# same tune with warm L2 (same run: wall time and tactic per bucket). Results in $OUT/cold_l2.tar.gz.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; mkdir -p "$OUT/c"
source benchmarks/device_install.sh
timeout 120 python3 -m pytest -p no:cacheprovider -q -s suites/kernels/test_runner.py -k cold_l2 2>&1 \
    | grep -E "warm L2|passed|failed|Error" | tee "$OUT/c/test.txt"
for l2 in warm cold; do
  flag=$([ "$l2" = cold ] && echo --cold-l2)
  start=$SECONDS
  timeout 200 moetune tune --model qwen3-235b-a22b --topology dep2 --dtype bf16 --no-progress $flag \
      --cache "$OUT/c/tuning-$l2.json" --json "$OUT/c/table-$l2.json" 2>&1 | tee "$OUT/c/tune-$l2.txt" | tail -20
  echo "$l2 L2: $((SECONDS - start)) s wall (one process, compilation included)" | tee -a "$OUT/c/tune-$l2.txt"
done
rm -f "$OUT"/c/*.lock
tar -czf "$OUT/cold_l2.tar.gz" -C "$OUT" c
