"""Kernel suites: run Triton in its CPU interpreter where no CUDA GPU exists.

Triton reads ``TRITON_INTERPRET`` when a kernel is first launched (and its JIT decorators look at
it at import), so it is set here, before any test module imports ``kernels`` or ``triton``. On a
GPU machine it is left alone and the kernels compile for the device.
"""

from __future__ import annotations

import os


def _cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not _cuda_present():
    os.environ["TRITON_INTERPRET"] = "1"
