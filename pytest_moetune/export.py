"""Export tuned tables in vLLM's fused-MoE config format (also read by SGLang).

File name: ``E=<local experts>,N=<I>,device_name=<GPU name, spaces as _>[,dtype=fp8_w8a8]
[,block_shape=[128,128]].json``; body: ``{"<bucket>": {"BLOCK_SIZE_M": .., "BLOCK_SIZE_N": ..,
"BLOCK_SIZE_K": .., "GROUP_SIZE_M": .., "num_warps": .., "num_stages": ..}, ...}``.

vLLM launches one tile config for both expert GEMMs; a runner whose tactic holds more (per-GEMM
tiles) maps it with ``vllm_config(tactic) -> dict`` (its gate/up GEMM's tile, usually).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from pytest_moetune.fileio import atomic_write_text

EXPORT_FORMATS = ("vllm",)
"""The formats ``moetune tune --export FORMAT`` writes; a runner's ``for_export(FORMAT)`` runner tunes
under its own op name."""

VLLM_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def vllm_file_name(local_num_experts: int, intermediate: int, device_name: str, dtype: str) -> str:
    """``E=64,N=1536,device_name=NVIDIA_H100_80GB_HBM3.json`` (fp8 adds dtype and block shape)."""
    name = f"E={local_num_experts},N={intermediate},device_name={device_name.replace(' ', '_')}"
    if dtype == "fp8_w8a8":
        name += ",dtype=fp8_w8a8,block_shape=[128,128]"
    return name + ".json"


def unexportable_reason(runner: Any) -> str | None:
    """Why ``runner``'s tactics cannot be written in vLLM's format (checked before tuning), or ``None``."""
    if getattr(runner, "vllm_config", None) is None:
        return f"runner {runner.name!r} has no vllm_config(tactic): its tactics cannot be exported"
    return None


def vllm_table(runner: Any, tactics_by_bucket: Mapping[int, Hashable]) -> dict[str, dict[str, int]]:
    """``{"<bucket>": {BLOCK_SIZE_M: ..}}`` from tuned tactics, via ``runner.vllm_config(tactic)``."""
    why_not = unexportable_reason(runner)
    if why_not is not None:
        raise ValueError(why_not)
    to_vllm = runner.vllm_config
    table: dict[str, dict[str, int]] = {}
    for bucket in sorted(tactics_by_bucket):
        config = dict(to_vllm(tactics_by_bucket[bucket]))
        missing = [k for k in VLLM_KEYS if k not in config]
        if missing:
            raise ValueError(f"runner {runner.name!r}: vllm_config for bucket {bucket} lacks {missing}")
        table[str(bucket)] = {k: int(config[k]) for k in VLLM_KEYS}
    return table


def write_vllm_config(directory: str | os.PathLike[str], file_name: str, table: Mapping[str, Any]) -> Path:
    """Write ``table`` atomically to ``directory/file_name`` (directories created)."""
    return atomic_write_text(Path(directory) / file_name, json.dumps(table, indent=4) + "\n")


def read_vllm_config(path: str | os.PathLike[str]) -> dict[int, dict[str, int]]:
    """Read a vLLM fused-MoE config back: ``{bucket: {BLOCK_SIZE_M: ..}}``, validated."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"vLLM config {str(path)!r} is not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"vLLM config {str(path)!r} must be a JSON object of bucket -> config")
    table: dict[int, dict[str, int]] = {}
    for bucket, config in data.items():
        if not bucket.isdigit() or not isinstance(config, dict) or set(config) != set(VLLM_KEYS):
            raise ValueError(f"vLLM config {str(path)!r}: bad entry {bucket!r}: {config!r}")
        table[int(bucket)] = {k: int(v) for k, v in config.items()}
    return table
