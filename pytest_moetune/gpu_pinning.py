"""One GPU per pytest-xdist worker (``pytest --moetune -n <gpus>``), pinned before CUDA starts.

Each worker's ``CUDA_VISIBLE_DEVICES`` is narrowed to one device of the controller's list (or of
``nvidia-smi -L`` when the controller set none), by worker number, before any test imports torch.
More workers than GPUs is a usage error: two workers timing on one GPU would disturb each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def visible_gpus() -> list[str]:
    """The controller's GPUs as ``CUDA_VISIBLE_DEVICES`` entries, without initializing CUDA."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def worker_index(worker_id: str) -> int:
    """``N`` of the pytest-xdist worker id ``gw<N>``.

    Raises:
        ValueError: an id that is not ``gw<N>``.
    """
    if not worker_id.startswith("gw") or not worker_id[2:].isdigit():
        raise ValueError(f"unexpected xdist worker id {worker_id!r}")
    return int(worker_id[2:])


def xdist_workers(option: object) -> int:
    """The pytest-xdist workers a run starts, from its ``config.option``: ``-n`` (0 without xdist,
    with ``-n 0``, or while ``-n`` is still unresolved text), at most ``--maxprocesses``."""
    workers = getattr(option, "numprocesses", None)
    if not isinstance(workers, int) or workers <= 0:
        return 0
    most = getattr(option, "maxprocesses", None)
    return min(workers, most) if isinstance(most, int) and most > 0 else workers


def check_worker_count(worker_count: int, gpus: list[str]) -> None:
    """Raise ``ValueError`` where ``worker_count`` workers would share ``gpus`` (none: no check, the
    workers run without a GPU). The controller checks before it starts them, each worker again.

    Raises:
        ValueError: more workers than GPUs.
    """
    if gpus and worker_count > len(gpus):
        raise ValueError(
            f"{worker_count} xdist workers but {len(gpus)} GPUs ({','.join(gpus)}): "
            f"use -n {len(gpus)} or fewer, one GPU per worker"
        )


def pin_worker(worker_id: str, worker_count: int, gpus: list[str]) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` for worker ``gw<N>``; returns the device, or None without GPUs.

    Raises:
        ValueError: more workers than GPUs, or a worker id that is not ``gw<N>``.
    """
    if not gpus:
        return None
    index = worker_index(worker_id)
    check_worker_count(worker_count, gpus)
    device = gpus[index]
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    return device
