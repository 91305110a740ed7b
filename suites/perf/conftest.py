"""Parametrize the gated throughput tests from ``--moetune-profile``."""

from __future__ import annotations

import pytest

from pytest_moetune.gate import selected_profile
from suites.perf.cases import cases_for


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "perf_case" in metafunc.fixturenames:
        cases = cases_for(selected_profile(metafunc.config))
        metafunc.parametrize("perf_case", cases, ids=[case.id for case in cases])
