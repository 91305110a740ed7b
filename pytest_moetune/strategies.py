"""Hypothesis strategies for property tests of MoE routing and kernels under EP/DP.

Import them in your own suites::

    from hypothesis import given
    from pytest_moetune.strategies import distributions, token_counts, topologies

    @given(topologies(), token_counts(max_value=256), distributions())
    def test_my_kernel(topology, num_tokens, distribution): ...

Needs ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

from hypothesis import strategies as st

from pytest_moetune.distributions import Distribution
from pytest_moetune.topology import Topology


@st.composite
def topologies(
    draw: st.DrawFn,
    *,
    max_experts: int = 512,
    max_ep_size: int = 64,
    max_top_k: int = 16,
    use_dp: bool | None = None,
) -> Topology:
    """Valid topologies: ``E = ep_size * L <= max_experts``, ``1 <= top_k <= min(E, max_top_k)``,
    any rank; both regimes unless ``use_dp`` fixes one. DEP draws include ``L < top_k``."""
    if max_experts < 1 or max_ep_size < 1 or max_top_k < 1:
        raise ValueError(
            f"max_experts={max_experts}, max_ep_size={max_ep_size}, max_top_k={max_top_k} must be >= 1"
        )
    ep_size = draw(st.integers(1, min(max_ep_size, max_experts)), label="ep_size")
    local = draw(st.integers(1, max_experts // ep_size), label="local_num_experts")
    num_experts = ep_size * local
    top_k = draw(st.integers(1, min(num_experts, max_top_k)), label="top_k")
    ep_rank = draw(st.integers(0, ep_size - 1), label="ep_rank")
    dp = draw(st.booleans(), label="use_dp") if use_dp is None else use_dp
    return Topology(num_experts, top_k, ep_size, ep_rank, dp)


def token_counts(min_value: int = 0, max_value: int = 1024) -> st.SearchStrategy[int]:
    """Rows per rank ``T``, including 0 (empty batch) and 1 (decode) by default."""
    if min_value < 0 or max_value < min_value:
        raise ValueError(f"need 0 <= min_value <= max_value, got {min_value}, {max_value}")
    return st.integers(min_value, max_value)


def zipf_alphas(min_value: float = 0.1, max_value: float = 3.0) -> st.SearchStrategy[float]:
    """Zipf exponents ``alpha > 0``."""
    if not 0 < min_value <= max_value:
        raise ValueError(f"need 0 < min_value <= max_value, got {min_value}, {max_value}")
    return st.floats(min_value, max_value, allow_nan=False, allow_infinity=False)


def distributions(*, include_zipf: bool = True) -> st.SearchStrategy[Distribution]:
    """The synthetic distributions: ``balanced``, ``random`` and (unless excluded) ``zipf:<alpha>``.

    ``replay`` needs a file, so it is not drawn here.
    """
    fixed = st.sampled_from([Distribution("balanced"), Distribution("random")])
    if not include_zipf:
        return fixed
    return st.one_of(fixed, zipf_alphas().map(lambda a: Distribution("zipf", alpha=a)))
