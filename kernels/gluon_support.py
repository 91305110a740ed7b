"""Whether the Gluon fp8 kernels (:mod:`kernels.gluon_gate_up`, :mod:`kernels.gluon_down`) can run.

They are written for Hopper (sm_90: wgmma, TMA, mbarriers) in Triton's Gluon dialect, which ships as
``triton.experimental.gluon`` from Triton 3.4 on; they were written and measured against Triton 3.6.
They are imported here, under a guard: on a Triton without Gluon, or whose Gluon lacks what they use,
``import kernels`` still works (Triton kernels only) and :func:`gluon_unready` says why.
"""

from __future__ import annotations

import torch
import triton

try:
    from kernels import gluon_down, gluon_gate_up  # noqa: F401  (imported for launchers' users)

    GLUON_IMPORT_ERROR: str | None = None
except (ImportError, AttributeError) as err:  # no triton.experimental.gluon, or another Gluon API
    GLUON_IMPORT_ERROR = f"{type(err).__name__}: {err}"

HAS_GLUON = GLUON_IMPORT_ERROR is None
HOPPER = (9, 0)


def gluon_unready(device: torch.device | str | None = None) -> str | None:
    """Why the Gluon kernels cannot run on ``device`` (default: the current CUDA device), or
    ``None`` when they can: needs this Triton build to have Gluon, no ``TRITON_INTERPRET``, and a
    CUDA device of compute capability 9.0 (H100/H200; sm_100 has other MMA instructions)."""
    if not HAS_GLUON:
        return f"this Triton cannot import the Gluon kernels ({GLUON_IMPORT_ERROR})"
    if triton.knobs.runtime.interpret:
        return "TRITON_INTERPRET is set (the CPU interpreter cannot run Gluon)"
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type != "cuda":
        return f"device {dev} is not a CUDA GPU"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    capability = torch.cuda.get_device_capability(dev)
    if capability != HOPPER:
        return f"compute capability {capability[0]}.{capability[1]} is not Hopper's 9.0"
    return None
