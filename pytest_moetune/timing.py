"""Timing device work: CUDA events around CUDA-graph replays of many launches (DESIGN.md section 4).

A round is one graph replay of ``calls`` launches, timed by a pair of CUDA events; its time per
launch is the round's sample. Compilation and warm-up run before capture, outside every round. For
cold-L2 numbers the caller passes several launches over different input buffers (together larger
than L2) and the graph cycles through them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Measurement:
    """Per-launch times of the rounds of one measurement, in microseconds."""

    rounds_us: tuple[float, ...]
    calls_per_round: int

    @property
    def median_us(self) -> float:
        return statistics.median(self.rounds_us)

    @property
    def spread(self) -> float:
        """Coefficient of variation of the rounds (0 for a single round)."""
        if len(self.rounds_us) < 2:
            return 0.0
        return statistics.stdev(self.rounds_us) / statistics.mean(self.rounds_us)


class Timer(Protocol):
    """Times a sequence of launches. ``name`` goes into tuning-cache keys."""

    name: str

    def measure(self, launches: Sequence[Callable[[], object]]) -> Measurement: ...


def tensor_bytes(obj: Any) -> int:
    """Bytes of all tensors reachable in ``obj`` (tensors, containers, dataclasses, ``__dict__``)."""
    import torch

    seen: set[int] = set()

    def walk(value: Any) -> int:
        if id(value) in seen:
            return 0
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(walk(v) for v in value.values())
        if isinstance(value, (list, tuple, set, frozenset)):
            return sum(walk(v) for v in value)
        if hasattr(value, "__dataclass_fields__"):
            return sum(walk(getattr(value, f)) for f in value.__dataclass_fields__)
        if hasattr(value, "__dict__") and not isinstance(value, type):
            return sum(walk(v) for v in vars(value).values())
        return 0

    return walk(obj)


def l2_cache_bytes(device: Any = None) -> int:
    """L2 size of the CUDA device (50 MiB on an H100)."""
    import torch

    return int(torch.cuda.get_device_properties(device).L2_cache_size)


def rotation_count(input_bytes: int, l2_bytes: int, max_sets: int = 64) -> int:
    """Input sets to cycle through so that, between two uses of one set, more than twice the L2 size
    of other data passes through the cache."""
    if input_bytes <= 0:
        return 1
    return max(1, min(max_sets, math.ceil(2 * l2_bytes / input_bytes) + 1))


def cold_l2_input_sets(l2_bytes: int | None = None) -> Callable[[Any], int]:
    """The tuner's ``input_sets`` for cold-L2 timing: :func:`rotation_count` of one input set's
    tensor bytes against ``l2_bytes`` (default: this CUDA device's L2)."""
    l2 = l2_cache_bytes() if l2_bytes is None else l2_bytes
    return lambda inputs: rotation_count(tensor_bytes(inputs), l2)


class CudaGraphTimer:
    """CUDA events around replays of one CUDA graph holding many launches.

    Args:
        rounds: timed replays; the measurement keeps each round's per-launch time.
        target_round_us: aim for rounds of about this long (more launches per graph for short kernels).
        max_calls: cap on launches per graph.
        cold_l2: label only; the caller supplies rotating launches (see :func:`rotation_count`).
        warmup_us: untimed replays before the rounds, to bring the clocks up after the GPU idled
            (the gate uses 50 ms; back-to-back tuning needs none).
    """

    def __init__(
        self,
        rounds: int = 5,
        target_round_us: float = 2000.0,
        max_calls: int = 200,
        cold_l2: bool = False,
        warmup_us: float = 0.0,
    ) -> None:
        if rounds < 1 or max_calls < 1 or target_round_us <= 0:
            raise ValueError(
                f"need rounds >= 1, max_calls >= 1, target_round_us > 0; got {rounds}, "
                f"{max_calls}, {target_round_us}"
            )
        self.rounds = rounds
        self.target_round_us = target_round_us
        self.max_calls = max_calls
        self.cold_l2 = cold_l2
        self.warmup_us = warmup_us

    @property
    def name(self) -> str:
        return f"cuda-graph-{'cold' if self.cold_l2 else 'warm'}-l2"

    def for_tuning(self) -> CudaGraphTimer:
        """The same timer without the clock warm-up: tuning times tactics back to back, so the
        clocks are up, and hundreds of tactics would pay the warm-up each."""
        return CudaGraphTimer(self.rounds, self.target_round_us, self.max_calls, self.cold_l2, warmup_us=0.0)

    def measure(self, launches: Sequence[Callable[[], object]]) -> Measurement:
        import torch

        if not launches:
            raise ValueError("measure needs at least one launch")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # compile + warm up outside any timed region
            for launch in launches:
                launch()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for launch in launches:
                launch()
            end.record()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        estimate_us = max(start.elapsed_time(end) * 1000.0 / len(launches), 1e-3)
        per_set = max(1, math.ceil(self.target_round_us / estimate_us / len(launches)))
        calls = len(launches) * per_set
        if calls > self.max_calls:
            calls = max(len(launches), self.max_calls - self.max_calls % len(launches))

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(calls):
                launches[i % len(launches)]()
        graph.replay()  # first replay uploads the graph
        torch.cuda.synchronize()
        # Replay for warmup_us before the timed rounds: an idle GPU (compiling, tuning on the host)
        # drops its clocks, and the first rounds after idling ran up to 17% slow on an H100.
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        round_us = max(start.elapsed_time(end) * 1000.0, 1.0)
        for _ in range(min(1000, math.ceil(self.warmup_us / round_us))):
            graph.replay()
        samples = []
        for _ in range(self.rounds):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1000.0 / calls)
        del graph
        return Measurement(tuple(samples), calls)
