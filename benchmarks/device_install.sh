# Sourced by the gpu_*.sh scripts: install this repo into the device machine's Python (editable, no
# dependencies: the machine has torch, triton and pytest-xdist) unless pip already has it from an
# earlier call on the same warm machine. `import pytest_moetune` is no test: it also succeeds from
# the repo root without an install, and then pytest lacks the plugin's entry point and its options.
python3 -c "import importlib.metadata as m; m.distribution('pytest-moetune')" 2>/dev/null \
    || python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -1
