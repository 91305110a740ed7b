"""The one small interface through which any MoE kernel plugs into the tuner and the gate.

A runner is an object with the attributes and methods of :class:`MoERunner`. pytest-moetune never
imports a kernel package: runners are registered

- from a ``conftest.py`` through the hook ``pytest_moetune_register_runners(registry)``;
- by an installed package through the entry-point group ``pytest_moetune.runners`` (the entry point
  names a runner object, class or zero-argument factory);
- for the ``moetune`` command: ``--runner MODULE:ATTR``, or ``runner = "MODULE:ATTR"`` under
  ``[tool.moetune]`` in the ``pyproject.toml`` of the current directory.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Hashable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pytest_moetune.problem import BucketProblem

ENTRY_POINT_GROUP = "pytest_moetune.runners"


@runtime_checkable
class MoERunner(Protocol):
    """A tunable MoE kernel.

    Attributes:
        name: the op's name, e.g. ``"fused_moe"``; part of every cache key and case id.
        source_hash: a hash of the kernel's source; a change re-tunes and flags baselines.
    """

    name: str
    source_hash: str

    def supports(self, problem: BucketProblem) -> bool:
        """Whether the kernel handles this problem at all (dtype, shape limits)."""
        ...

    def tactics(self, problem: BucketProblem) -> Sequence[Hashable]:
        """The tactic space for this bucket, already pruned by problem size."""
        ...

    def default_tactic(self, problem: BucketProblem) -> Hashable:
        """A tactic that is good without tuning (what a cache miss gets)."""
        ...

    def tactic_to_dict(self, tactic: Hashable) -> dict[str, Any]:
        """JSON-serializable form of a tactic (for caches and baselines)."""
        ...

    def tactic_from_dict(self, data: dict[str, Any]) -> Hashable:
        """Inverse of :meth:`tactic_to_dict`; ``ValueError`` on data it does not recognise."""
        ...

    def make_inputs(self, problem: BucketProblem, topk_ids: Any, topk_weights: Any) -> Any:
        """Device inputs for one launch: activations and weights for ``problem`` and this routing.

        ``topk_ids`` ``(T, top_k)`` int32 global expert ids, ``topk_weights`` ``(T, top_k)`` float32,
        both on the device.
        """
        ...

    def run(self, inputs: Any, tactic: Hashable) -> Any:
        """Launch the kernel with ``tactic``; returns the output tensor. Must be CUDA-graph capturable."""
        ...

    def reference(self, inputs: Any) -> Any:
        """The reference output for ``inputs`` (fp32 compute), to check tactics against."""
        ...

    def max_relative_error(self, problem: BucketProblem) -> float:
        """Largest ``||out - ref|| / ||ref||`` a correct tactic produces on this problem."""
        ...


# Optional runner members, looked up with getattr:
#   peer(inputs) -> output: what a user would run instead (e.g. a torch._grouped_mm layer), timed
#       beside each gated case under --moetune-peer;
#   vllm_config(tactic) -> dict: the tactic in vLLM's fused-MoE config format (moetune tune --export);
#   for_export(format) -> runner: the runner ``moetune tune --export FORMAT`` tunes with instead, when
#       some tactics have no equivalent in that format (e.g. kernels the target engine lacks); give
#       it its own ``name`` so that its tuning cache entries stay apart;
#   compile_units(problem, tactic) -> list of hashables with a stable repr: the kernels that running
#       ``tactic`` compiles (tactics that share a kernel name it alike), so parallel tuners split the
#       compiling between them (pytest_moetune.compile_claims);
#   space_hash: str: a hash of the code that decides the tactic space, default and inputs but not the
#       kernel's speed or results (kept out of ``source_hash``, which baselines record); tuning cache
#       keys include it, so a change there re-tunes without flagging baselines.


_REQUIRED = (
    "name",
    "source_hash",
    "supports",
    "tactics",
    "default_tactic",
    "tactic_to_dict",
    "tactic_from_dict",
    "make_inputs",
    "run",
    "reference",
    "max_relative_error",
)


def check_runner(obj: object, origin: str) -> MoERunner:
    """``obj`` if it has everything a runner needs, else ``ValueError`` naming what is missing."""
    missing = [attr for attr in _REQUIRED if not hasattr(obj, attr)]
    if missing:
        raise ValueError(f"{origin} gives {type(obj).__name__}, which is not a runner: missing {missing}")
    if not isinstance(obj.name, str) or not obj.name:  # type: ignore[attr-defined]
        raise ValueError(f"{origin}: runner.name must be a non-empty string")
    return obj  # type: ignore[return-value]


def _instantiate(obj: object, origin: str) -> MoERunner:
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "tactics")):
        try:
            obj = obj()  # a class or a zero-argument factory
        except TypeError as err:
            raise ValueError(f"{origin}: cannot make a runner by calling {obj!r}: {err}") from err
    return check_runner(obj, origin)


def load_runner(spec: str, search_path: Path | None = None) -> MoERunner:
    """Import ``MODULE:ATTR`` and return the runner it names (an object, class or factory).

    ``search_path`` (default: the current directory) is put first on ``sys.path``, as ``python -m``
    does, so a repo-local package such as this repo's ``kernels`` imports.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"runner {spec!r} must be written MODULE:ATTR, e.g. kernels.runner:FusedMoERunner")
    root = str((search_path or Path.cwd()).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"runner {spec!r}: cannot import {module_name!r}: {err}") from err
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"runner {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return _instantiate(obj, f"runner {spec!r}")


def entry_point_runners() -> Iterator[MoERunner]:
    """Runners that installed packages register under the ``pytest_moetune.runners`` group."""
    for _origin, runner in entry_point_runners_with_origin():
        yield runner


def entry_point_runners_with_origin() -> Iterator[tuple[str, MoERunner]]:
    """``(origin, runner)`` for each runner of the ``pytest_moetune.runners`` entry points, the
    origin naming the entry point (for registry errors)."""
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry.name!r} ({entry.value})"
        yield origin, _instantiate(entry.load(), origin)


class RunnerRegistry:
    """Runners by name. Registering a second runner under a taken name is an error."""

    def __init__(self) -> None:
        self._runners: dict[str, MoERunner] = {}
        self._origins: dict[str, str] = {}

    def add(self, runner: object, origin: str = "register") -> MoERunner:
        """Register ``runner`` (checked by :func:`check_runner`); ``origin`` says where it came from,
        for the errors."""
        checked = check_runner(runner, origin)
        if checked.name in self._runners and self._runners[checked.name] is not checked:
            raise ValueError(
                f"{origin}: a runner named {checked.name!r} is already registered, by "
                f"{self._origins[checked.name]}; register each runner once (an installed package's "
                f"{ENTRY_POINT_GROUP!r} entry point, or a conftest's pytest_moetune_register_runners "
                "hook, not both)"
            )
        self._runners[checked.name] = checked
        self._origins[checked.name] = origin
        return checked

    def get(self, name: str) -> MoERunner:
        try:
            return self._runners[name]
        except KeyError:
            known = ", ".join(self._runners) or "none registered"
            raise ValueError(
                f"no MoE runner named {name!r}; registered: {known} (a case names its runner: "
                f"MoECase(..., runner=NAME), whose default is 'fused_moe')"
            ) from None

    def __iter__(self) -> Iterator[MoERunner]:
        return iter(self._runners.values())

    def __len__(self) -> int:
        return len(self._runners)

    def names(self) -> list[str]:
        return list(self._runners)
