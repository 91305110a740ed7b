"""pytest-moetune: autotune Triton MoE kernels under realistic EP/DP topologies, gate them in CI.

Importing this package needs neither torch nor triton nor a GPU: the torch-backed routing helpers
(:func:`dummy_topk`, :func:`routing_stats`) are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_moetune.distributions import Distribution, default_distribution, parse_distribution
from pytest_moetune.models import MODELS, ModelShape, get_model
from pytest_moetune.topology import Topology, TopologySpec

if TYPE_CHECKING:
    from pytest_moetune.routing import RoutingStats, dummy_topk, routing_stats

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "Distribution",
    "ModelShape",
    "RoutingStats",
    "Topology",
    "TopologySpec",
    "__version__",
    "default_distribution",
    "dummy_topk",
    "get_model",
    "parse_distribution",
    "routing_stats",
]

_LAZY_ROUTING = ("RoutingStats", "dummy_topk", "routing_stats")


def __getattr__(name: str) -> Any:
    if name in _LAZY_ROUTING:
        from pytest_moetune import routing

        return getattr(routing, name)
    raise AttributeError(f"module 'pytest_moetune' has no attribute {name!r}")
