"""Hook specifications that pytest-moetune adds to pytest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_moetune.runner import RunnerRegistry


@pytest.hookspec
def pytest_moetune_register_runners(registry: RunnerRegistry, config: pytest.Config) -> None:
    """Register MoE kernel runners with ``registry.add(runner)``.

    Implement it in a ``conftest.py`` (or a plugin). It is called once, the first time a test asks
    for the runners: import the kernel package inside the hook, and a run that never tunes never
    imports it. Runners that installed packages publish under the entry-point group
    ``pytest_moetune.runners`` are registered before it is called.
    """
