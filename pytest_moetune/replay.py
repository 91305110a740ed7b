"""Recorded top-k traces for ``replay:<path>`` routing: safe loading and validation.

A trace is a 2-D integer array ``(N, top_k)`` of global expert ids, one row per token, as a router
produced them. ``.pt`` files load with ``torch.load(weights_only=True)`` and must hold one tensor (or a
dict with a ``"topk_ids"`` tensor); ``.npy`` files load with ``allow_pickle=False``. Nothing in a trace
can execute code; anything else is refused with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pytest_moetune.topology import Topology


def _load_raw(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        import numpy as np

        try:
            array = np.load(path, allow_pickle=False)
        except Exception as err:  # numpy raises several types for bad files
            raise ValueError(f"replay file {str(path)!r} is not a readable .npy array: {err}") from None
        if not isinstance(array, np.ndarray):
            raise ValueError(f"replay file {str(path)!r} does not hold a single array")
        if array.dtype.kind not in "iu":
            raise ValueError(
                f"replay file {str(path)!r} holds dtype {array.dtype}, expected integer expert ids"
            )
        return torch.from_numpy(array.astype("int64"))
    if path.suffix == ".pt":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and weights-only errors differ by torch version
            raise ValueError(
                f"replay file {str(path)!r} is not a tensor file loadable with weights_only=True: {err}"
            ) from None
        if isinstance(obj, dict) and "topk_ids" in obj:
            obj = obj["topk_ids"]
        if not isinstance(obj, torch.Tensor):
            raise ValueError(
                f"replay file {str(path)!r} holds {type(obj).__name__}, expected a tensor of top-k "
                "ids or a dict with a 'topk_ids' tensor"
            )
        if obj.dtype.is_floating_point or obj.dtype.is_complex or obj.dtype == torch.bool:
            raise ValueError(
                f"replay file {str(path)!r} holds dtype {obj.dtype}, expected integer expert ids"
            )
        return obj.to(torch.int64)
    raise ValueError(f"replay file {str(path)!r} is refused: only .pt and .npy traces are read")


def load_trace(path: str | Path, topology: Topology) -> torch.Tensor:
    """Load and validate a recorded trace for ``topology``.

    Returns:
        ``(N, top_k)`` int64 global expert ids, ``N >= 1``, on the CPU.

    Raises:
        ValueError: naming the file and what is wrong (shape, dtype, id range, duplicate id in a row).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"replay file {str(path)!r} does not exist")
    ids = _load_raw(path)
    if ids.dim() != 2 or ids.shape[0] < 1 or ids.shape[1] != topology.top_k:
        raise ValueError(
            f"replay file {str(path)!r} has shape {tuple(ids.shape)}, expected (N >= 1, "
            f"top_k={topology.top_k})"
        )
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= topology.num_experts:
        bad = low if low < 0 else high
        raise ValueError(
            f"replay file {str(path)!r} has expert id {bad} outside [0, num_experts={topology.num_experts})"
        )
    if topology.top_k > 1:
        ordered = ids.sort(dim=1).values
        dup_rows = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1).nonzero()
        if dup_rows.numel():
            row = int(dup_rows[0])
            raise ValueError(f"replay file {str(path)!r} row {row} repeats an expert: {ids[row].tolist()}")
    return ids


def resample_trace(ids: torch.Tensor, topology: Topology, num_tokens: int) -> torch.Tensor:
    """The rows this rank would process, resampled to ``num_tokens`` rows.

    Under DEP the all-to-all delivers only rows with at least one slot in the rank's shard, so rows
    without one are dropped first (their other slots stay: the kernel skips non-local slots). Pure EP
    keeps every row. Fewer rows than the trace: evenly strided rows; more: the trace repeated.

    Args:
        ids: ``(N, top_k)`` int64 from :func:`load_trace`.

    Returns:
        ``(num_tokens, top_k)`` int64.
    """
    if topology.use_dp:
        offset, local = topology.local_expert_offset, topology.local_num_experts
        keep = ((ids >= offset) & (ids < offset + local)).any(dim=1)
        ids = ids[keep]
        if ids.shape[0] == 0:
            raise ValueError(
                f"replay trace has no row with a slot on rank {topology.ep_rank}'s shard "
                f"[{offset}, {offset + local}) of {topology.name}: nothing would be dispatched there"
            )
    n = ids.shape[0]
    if num_tokens <= n:
        index = torch.arange(num_tokens, dtype=torch.int64) * n // max(num_tokens, 1)
    else:
        index = torch.arange(num_tokens, dtype=torch.int64) % n
    return ids[index]
