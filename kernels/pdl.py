"""Programmatic dependent launch (PDL) for the layer's Triton kernels, on Hopper and later GPUs.

The layer is a chain of small launches (alignment, fp8 quantization of x, row gather, gate/up, down,
combine). Without PDL each kernel is launched only when the one before it has finished and its
writes are flushed, so every boundary costs a launch and the ramp of a fresh grid; at decode (a
few tokens, a 30-180 µs layer) that is a large share of the layer. With PDL a kernel is launched
with CUDA's programmatic stream serialization attribute (Triton's ``launch_pdl``): its programs may
start while its predecessor still runs, and each one first executes ``griddepcontrol.wait``
(:func:`pdl_enter`), which returns once the predecessor grid has completed and its memory is
visible. Every kernel launched this way waits before it reads or writes anything, on every path,
so the chain stays ordered end to end: kernel n + 2 waits on n + 1, which could not finish before
n. Each program then signals ``griddepcontrol.launch_dependents``, which lets the next kernel launch
once every program of this one has signalled or exited: the small kernels (alignment, quantization,
row gather, combine) right after their wait, the Triton GEMMs only after their K loop. With the
GEMMs signalling at once too, mixtral's fp8 layer at T = 1 took 1.38x its time without PDL (H200,
BENCHMARKS.md, runs 90-91), most likely because the next kernel's programs were placed while the
GEMM's still ran, on the few SMs with room (not profiled); after the K loop it is 0.97x. Kernels launched
without the attribute (the Gluon kernels, torch's) keep the ordinary stream order, which is also
safe on either side of a PDL launch. CUDA-graph capture keeps the programmatic edges.

On by default where it applies (an NVIDIA GPU of compute capability 9.0 or later, not the Triton
interpreter); ``MOETUNE_PDL=0`` in the environment turns it off, and :func:`pdl_forced` turns it off
or on for a block of code (the A/B benchmarks). Results are the same bits either way.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

ENV = "MOETUNE_PDL"
"""Environment variable: ``0`` turns PDL off (any other value, or unset, leaves it on where it
applies)."""
MIN_CAPABILITY = (9, 0)

_forced: contextvars.ContextVar[bool | None] = contextvars.ContextVar("moetune_pdl_forced", default=None)


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def pdl_unready(device: torch.device) -> str | None:
    """Why the layer's kernels on ``device`` launch without PDL, or ``None`` when they use it."""
    return _unable(device) or _turned_off()


def pdl_turned_off(device: torch.device) -> bool:
    """Whether ``device`` could launch with PDL but ``MOETUNE_PDL=0`` or :func:`pdl_forced` turned
    it off: the layer then runs slower at decode than the code's default (the tuner and the gate key
    on it, ``kernels.runner``)."""
    return _unable(device) is None and _turned_off() is not None


def _turned_off() -> str | None:
    forced = _forced.get()
    if forced is not None:
        return None if forced else "turned off by kernels.pdl.pdl_forced(False)"
    if os.environ.get(ENV, "1").strip() == "0":
        return f"{ENV}=0 is set"
    return None


def _unable(device: torch.device) -> str | None:
    if triton.knobs.runtime.interpret:
        return "TRITON_INTERPRET is set (the interpreter runs no grid dependencies)"
    if device.type != "cuda" or torch.version.hip is not None or not torch.cuda.is_available():
        return f"device {device} is not an NVIDIA CUDA GPU (griddepcontrol is PTX)"
    capability = _capability(device.index if device.index is not None else torch.cuda.current_device())
    if capability < MIN_CAPABILITY:
        return f"compute capability {capability[0]}.{capability[1]} is below 9.0"
    return None


def pdl_args(device: torch.device) -> dict[str, bool]:
    """Launch arguments for a kernel that starts with :func:`pdl_enter`: its ``PDL`` constexpr and,
    where PDL applies on ``device``, Triton's ``launch_pdl`` option."""
    if pdl_unready(device) is None:
        return {"PDL": True, "launch_pdl": True}
    return {"PDL": False}


@contextlib.contextmanager
def pdl_forced(enabled: bool) -> Iterator[None]:
    """Launch with PDL on or off inside the block (this thread only; asyncio tasks created inside it
    inherit the setting), whatever ``MOETUNE_PDL`` says; where PDL cannot run (:func:`pdl_unready`:
    the interpreter, no NVIDIA GPU, below sm_90) it stays off."""
    token = _forced.set(enabled)
    try:
        yield
    finally:
        _forced.reset(token)


@triton.jit
def pdl_enter(PDL: tl.constexpr, LAUNCH_NEXT: tl.constexpr = True):
    """A kernel's first step: with ``PDL``, wait until the previous grid has completed and its
    writes are visible, then, with ``LAUNCH_NEXT``, let the next grid launch. Must run before any load
    or store, on every path."""
    if PDL:
        gdc_wait()
        if LAUNCH_NEXT:
            gdc_launch_dependents()


@triton.jit
def pdl_launch_next(PDL: tl.constexpr):
    """With ``PDL``, let the next grid launch: a GEMM's programs call it once their K loop is done
    (:func:`pdl_enter` with ``LAUNCH_NEXT=False``)."""
    if PDL:
        gdc_launch_dependents()
