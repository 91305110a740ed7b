"""The environment a tuning result or a baseline was measured in.

A tuned tactic is only as good as the GPU, driver and software stack that picked it, so tuning caches
and baselines record an :class:`EnvironmentFingerprint` and compare it with the current one on load.

Importing this module needs neither torch nor triton: :meth:`EnvironmentFingerprint.current` imports
torch when it probes the device, and reads triton's version from the installed package metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

NO_GPU = "cpu"
"""``gpu_name`` and ``sm`` of a machine without a CUDA device."""

NONE = "none"
"""The value of a component that is absent (no ``nvidia-smi``, torch or triton not installed)."""

UNKNOWN_CARD = "unknown"
""":func:`card_id` of a CUDA device whose UUID torch does not report."""

NVIDIA_SMI_TIMEOUT_S = 5.0
NVIDIA_PROC_VERSION = "/proc/driver/nvidia/version"
"""Where a Linux NVIDIA kernel module states its version: read before ``nvidia-smi`` is asked."""
_PROC_DRIVER = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)\b")
_TRITON_DISTRIBUTIONS = ("triton", "pytorch-triton", "pytorch-triton-rocm")


@dataclass(frozen=True)
class EnvironmentFingerprint:
    """GPU, driver and software versions that decide which tactic wins.

    Attributes:
        gpu_name: CUDA device name, e.g. ``"NVIDIA H100 80GB HBM3"``; ``"cpu"`` without a GPU.
        sm: compute capability ``"<major>.<minor>"``, e.g. ``"9.0"``; ``"cpu"`` without a GPU.
        driver: NVIDIA driver version from ``nvidia-smi``, e.g. ``"580.82.07"``; ``"none"`` without it.
        torch: ``torch.__version__``, e.g. ``"2.11.0+cu130"``; ``"none"`` if torch is not installed.
        triton: installed triton version, e.g. ``"3.6.0"``; ``"none"`` if triton is not installed.
        plugin: ``pytest_moetune.__version__``.
    """

    gpu_name: str
    sm: str
    driver: str
    torch: str
    triton: str
    plugin: str

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def current(cls) -> EnvironmentFingerprint:
        """The fingerprint of this process's environment (probed once, then cached).

        Probes CUDA through torch, so call it only where a GPU may be used (not at plugin import).
        """
        return _probe()

    def to_dict(self) -> dict[str, str]:
        """The fields as a JSON-ready ``{name: value}`` dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvironmentFingerprint:
        """Build a fingerprint from exactly its fields, e.g. a dict made by :meth:`to_dict`.

        Raises:
            ValueError: naming the fields that are missing, unexpected, or not strings.
        """
        names = cls.field_names()
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"environment fingerprint is missing field(s) {', '.join(missing)}")
        extra = sorted(str(key) for key in data if key not in names)
        if extra:
            raise ValueError(f"environment fingerprint has unexpected field(s) {', '.join(extra)}")
        for name in names:
            value = data[name]
            if not isinstance(value, str):
                raise ValueError(
                    f"environment fingerprint field {name} must be a string, got {type(value).__name__} "
                    f"{value!r}"
                )
        return cls(**{name: data[name] for name in names})

    def mismatches(
        self, other: EnvironmentFingerprint, *, recorded: str = "cache", now: str = "now"
    ) -> list[str]:
        """How ``other`` (the environment now) differs from ``self`` (the recorded one).

        One line per differing field, in field order, e.g. ``"torch: 2.11.0 (cache) != 2.13.0 (now)"``
        (``recorded`` and ``now`` name the two sides); empty when the fingerprints are equal.
        """
        lines = []
        for name in self.field_names():
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                lines.append(f"{name}: {mine} ({recorded}) != {theirs} ({now})")
        return lines

    @property
    def slug(self) -> str:
        """The GPU name as a file/folder name: ``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``.

        ``"cpu"`` without a GPU.
        """
        return re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "unknown"


@functools.cache
def card_id() -> str:
    """This process's CUDA device as one physical card: its UUID (``GPU-...``), which tells two cards
    of one model apart; ``"cpu"`` without a CUDA device, ``"unknown"`` where torch reports none.

    Baselines record it beside the :class:`EnvironmentFingerprint`, which leaves it out so that cards
    of one model share tuning caches and baseline folders. Imports torch (call it where a GPU may be
    used).
    """
    try:
        import torch
    except ImportError:
        return NO_GPU
    if not torch.cuda.is_available():
        return NO_GPU
    return card_of(torch.cuda.current_device())


def card_of(index: int) -> str:
    """The card of CUDA device ``index`` (as :func:`card_id`; torch with CUDA available)."""
    import torch

    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if not uuid:
        return UNKNOWN_CARD
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


@functools.cache
def _probe() -> EnvironmentFingerprint:
    from pytest_moetune import __version__

    gpu_name = sm = NO_GPU
    torch_version = NONE
    try:
        import torch
    except ImportError:
        pass
    else:
        torch_version = str(torch.__version__)
        if torch.cuda.is_available():
            device = torch.cuda.current_device()
            gpu_name = torch.cuda.get_device_name(device)
            major, minor = torch.cuda.get_device_capability(device)
            sm = f"{major}.{minor}"
    return EnvironmentFingerprint(
        gpu_name=gpu_name,
        sm=sm,
        driver=_driver_version(),
        torch=torch_version,
        triton=_triton_version(),
        plugin=__version__,
    )


def _driver_version() -> str:
    """The NVIDIA driver version: the kernel module's (:data:`NVIDIA_PROC_VERSION`, a file read that
    cannot time out), else the one ``nvidia-smi`` reports; ``"none"`` when neither exists.

    ``"unknown"`` when ``nvidia-smi`` exists but fails or does not answer within the timeout. That is
    rare once the module's file is read first, and worth avoiding: a recorded driver that differs
    from ``"unknown"`` makes every tuning cache entry stale.
    """
    from_module = _driver_from_proc()
    if from_module is not None:
        return from_module
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return NONE
    try:
        result = subprocess.run(
            [nvidia_smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = result.stdout.strip().splitlines()  # one line per GPU; the driver is the same for all
    return lines[0].strip() if lines else "unknown"


def _driver_from_proc() -> str | None:
    """The version in :data:`NVIDIA_PROC_VERSION` (``NVRM version: NVIDIA UNIX x86_64 Kernel Module
    580.82.07 ...``, or ``... Open Kernel Module for x86_64 580.82.07 ...``); ``None`` where the file
    is missing, unreadable or says no version."""
    try:
        with open(NVIDIA_PROC_VERSION, encoding="utf-8", errors="replace") as handle:
            text = handle.read(4096)
    except OSError:
        return None
    match = _PROC_DRIVER.search(text)
    return match.group(1) if match else None


def _triton_version() -> str:
    """Triton's version from package metadata, without importing triton (slow, and may need a GPU)."""
    for distribution in _TRITON_DISTRIBUTIONS:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return NONE
