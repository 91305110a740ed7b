# Sourced by the gpu_*.sh scripts, after they set RESULTS (a folder under $OUT) and TESTS_K (the -k
# expression of the GPU kernel tests to run first): RES is the results folder ($OUT/$RESULTS, made
# here), left() the seconds left of $DEADLINE (default 570) for the next step's timeout; then the
# install (benchmarks/device_install.sh), the card into $RES/gpu.txt and, unless TESTS=0, the tests
# into $RES/tests.log.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-out}; deadline=${DEADLINE:-570}
RES="$OUT/$RESULTS"
mkdir -p "$RES"
left() { echo $((deadline - SECONDS)); }
source benchmarks/device_install.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,serial,uuid --format=csv,noheader | tee "$RES/gpu.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout "$(left)" python3 -m pytest suites/kernels/test_correctness_gpu.py -k "$TESTS_K" -q \
      -p no:cacheprovider > "$RES/tests.log" 2>&1
  echo "tests: rc $?, $SECONDS s"; tail -3 "$RES/tests.log"
fi
