#!/usr/bin/env bash
# Several `benchmarks/default_ab.py` runs in one device call, each a NAME and its arguments (one
# string, split on spaces), in order; each gets what is left of $DEADLINE (default 570 s) and writes
# $OUT/default-ab/NAME.{log,json}. The GPU kernel tests run first only with TESTS=1 (TESTS_K: their -k).
#
#   bash benchmarks/gpu_default_ab.sh fp8 "--old OLD.json --dtypes fp8_w8a8 --changed-only" \
#       oss "--old OLD.json --match gpt-oss --variant gate_up=64x128w4s4"
set -uo pipefail
RESULTS=default-ab TESTS=${TESTS:-0} TESTS_K=${TESTS_K:-fp8}
source benchmarks/device_steps.sh
while [ $# -ge 2 ]; do
  name=$1; read -ra args <<< "$2"; shift 2
  timeout "$(left)" python3 benchmarks/default_ab.py "${args[@]}" --json "$RES/$name.json" > "$RES/$name.log" 2>&1
  echo "$name: rc $?, $SECONDS s" | tee -a "$RES/steps.txt"
  grep "/old over" "$RES/$name.log"
done
