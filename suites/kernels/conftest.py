"""Kernel suites: run Triton in its CPU interpreter where no CUDA GPU exists.

Triton reads ``TRITON_INTERPRET`` when a kernel is first launched (and its JIT decorators look at
it at import), so it is set here, before any test module imports ``kernels`` or ``triton``. On a
GPU machine it is left alone and the kernels compile for the device. The GPU check asks
``nvidia-smi`` (or ``CUDA_VISIBLE_DEVICES``), not CUDA: initializing CUDA here would come before
``pytest --moetune -n <gpus>`` pins each xdist worker to its GPU.
"""

from __future__ import annotations

import os

from pytest_moetune.gpu_pinning import visible_gpus

if not visible_gpus():
    os.environ["TRITON_INTERPRET"] = "1"
