#!/usr/bin/env bash
# Issue 6 on one H100: `pytest --moetune --moetune-profile full suites/perf` in shards (one -k
# expression per argument, each a fresh pytest process), writing baselines, peer and roofline per
# case, a report and a plot per shard; the fidelity suite first when $FIDELITY=1 ($FIDELITY_K: a -k
# selection of its cases; each case's points are written as soon as it finishes).
#
#   FIDELITY=1 bash benchmarks/gpu_full_profile.sh "mixtral-8x7b or qwen3-30b-a3b" "deepseek-r1"
#   FIDELITY=1 FIDELITY_K="dep2 or dep8" bash benchmarks/gpu_full_profile.sh    # fidelity only
#
# A shard starts only if the one before it, scaled by its case count, still fits $DEADLINE (seconds of
# this script, default 560). Baselines and the tuning cache persist in $MOETUNE_GPU_STATE (default
# .gpu-state, git-ignored: carry it between calls). Results in $OUT/full.tar.gz.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; state=${MOETUNE_GPU_STATE:-.gpu-state}; deadline=${DEADLINE:-560}
mkdir -p "$OUT/f" "$state/baselines"
source benchmarks/device_install.sh
common=(--moetune --moetune-profile full -p no:cacheprovider -q --moetune-cache "$state/full-cache.json"
        --moetune-baselines "$state/baselines")
if [ "${FIDELITY:-0}" = 1 ]; then
  start=$SECONDS
  select=(); [ -n "${FIDELITY_K:-}" ] && select=(-k "$FIDELITY_K")
  MOETUNE_FIDELITY_OUT="$OUT/f" timeout $((deadline - SECONDS)) python3 -m pytest "${common[@]}" --moetune-fidelity suites/fidelity \
      "${select[@]}" --durations=5 2>&1 | tail -40
  echo "fidelity suite: $((SECONDS - start)) s wall" | tee "$OUT/f/fidelity-wall.txt"
  python3 benchmarks/fidelity_table.py "$OUT/f" | tee "$OUT/f/fidelity.md"
fi
per_case=0
for shard in "$@"; do
  name=$(echo "$shard" | tr -c 'a-z0-9\n' '_' | tr -s '_')
  count=$(python3 -m pytest "${common[@]}" suites/perf -k "$shard" --co 2>/dev/null | grep -c '::')
  need=$(python3 -c "print(int($per_case * $count * 1.2))")
  if [ $((SECONDS + need)) -ge "$deadline" ]; then echo "deadline: skipped shard '$shard' ($count cases, ~${need}s)"; continue; fi
  start=$SECONDS
  timeout $((deadline - SECONDS + 30)) python3 -m pytest "${common[@]}" suites/perf -k "$shard" \
      --moetune-update-baselines --moetune-peer --durations=5 \
      --moetune-report "$OUT/f/full-$name" --moetune-plot "$OUT/f/full-$name.png" 2>&1 | tail -12
  wall=$((SECONDS - start))
  per_case=$(python3 -c "print($wall / max(1, $count))")
  echo "shard '$shard': $count cases, ${wall} s wall" | tee -a "$OUT/f/full-wall.txt"
done
cp -r "$state/baselines" "$OUT/f/"
rm -f "$OUT"/f/*.lock "$state"/*.lock
tar -czf "$OUT/full.tar.gz" -C "$OUT" f
