"""Repo-wide test setup.

Hypothesis profiles: ``ci`` (derandomized, so a CI failure reproduces; chosen when ``$CI`` is set),
``dev`` (random exploration) and ``thorough`` (10x dev's examples, for a bug hunt before a release:
``HYPOTHESIS_PROFILE=thorough pytest suites/properties``). ``HYPOTHESIS_PROFILE`` picks one explicitly.

Where no CUDA GPU exists, Triton runs in its CPU interpreter: ``TRITON_INTERPRET`` is set here, before
any test module imports ``kernels`` or ``triton`` (Triton reads it at import and launch). The GPU
check asks ``nvidia-smi`` / ``CUDA_VISIBLE_DEVICES``, not CUDA: initializing CUDA here would come
before ``pytest --moetune -n <gpus>`` pins each xdist worker to its GPU.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from pytest_moetune.gpu_pinning import visible_gpus

if not visible_gpus():
    os.environ["TRITON_INTERPRET"] = "1"

settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.hookimpl(optionalhook=True)  # the hook exists only where pytest-moetune is installed
def pytest_moetune_register_runners(registry) -> None:  # type: ignore[no-untyped-def]
    """This repo's Triton fused MoE layer, imported only when a test asks for the runners."""
    from kernels.runner import FusedMoERunner

    registry.add(FusedMoERunner())
