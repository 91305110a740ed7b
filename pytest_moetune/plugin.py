"""The pytest plugin: options, markers, topology/distribution fixtures and the report header.

Loaded in every pytest run of an environment that installs pytest-moetune (``pytest11`` entry
point). Without ``--moetune`` and without its fixtures in use it imports nothing heavy, touches no GPU
and changes no other test's outcome: this module imports only the pure-Python topology and
distribution parsers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, TypeVar

import pytest

from pytest_moetune.argtypes import argparse_type
from pytest_moetune.distributions import (
    ENV_VAR,
    Distribution,
    default_distribution,
    parse_distribution,
)
from pytest_moetune.topology import TopologySpec

if TYPE_CHECKING:
    from pytest_moetune.runner import RunnerRegistry

DEFAULT_TOPOLOGIES = "ep1"
MARKERS = {
    "moetune": "moetune: GPU tuning / regression test; runs only with `pytest --moetune` on a CUDA GPU.",
    "moetune_topology": (
        "moetune_topology(*names): topologies this test runs under (ep<N> / dep<N>), "
        "e.g. @pytest.mark.moetune_topology('dep2', 'ep8')."
    ),
    "moetune_distributed": (
        "moetune_distributed: runs on every rank of a torch.distributed launch "
        "(`torchrun --nproc-per-node N -m pytest ...`); skipped otherwise."
    ),
    "moetune_fidelity": (
        "moetune_fidelity: a tuning-fidelity study (times whole tactic spaces on dispatched traffic, "
        "minutes per case); runs only with `--moetune-fidelity`, so no profile's budget carries it."
    ),
    "moetune_distribution": (
        "moetune_distribution(*specs): dummy routing distributions this test runs under, "
        "e.g. @pytest.mark.moetune_distribution('balanced', 'zipf:1.2')."
    ),
}

T = TypeVar("T")
pytest_plugins = ["pytest_moetune.gate"]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _parse_list(text: str, parse: Callable[[str], T], what: str) -> tuple[T, ...]:
    names = _split(text)
    if not names:
        raise ValueError(f"empty {what} list {text!r}")
    return tuple(dict.fromkeys(parse(name) for name in names))


def _topologies(text: str) -> tuple[TopologySpec, ...]:
    return _parse_list(text, TopologySpec.parse, "topology")


def _distributions(text: str) -> tuple[Distribution, ...]:
    return _parse_list(text, parse_distribution, "distribution")


topology_list = argparse_type(_topologies)
"""argparse ``type=`` for ``--moetune-topology dep2,ep8``."""
distribution_list = argparse_type(_distributions)
"""argparse ``type=`` for ``--moetune-distribution balanced,zipf:1.2``."""


@dataclass(frozen=True)
class Selection:
    """What this run parametrizes over. ``*_explicit`` is set when the user chose the list
    (option or ini); then it also narrows the lists that markers give."""

    enabled: bool
    topologies: tuple[TopologySpec, ...]
    topologies_explicit: bool
    distributions: tuple[Distribution, ...] | None
    distributions_explicit: bool

    def resolved_distributions(self) -> tuple[Distribution, ...]:
        """The distributions, falling back to ``$MOETUNE_DUMMY_DISTRIBUTION`` (else balanced)."""
        if self.distributions is not None:
            return self.distributions
        return (default_distribution(),)


SELECTION_KEY = pytest.StashKey[Selection]()
RUNNERS_KEY = pytest.StashKey["RunnerRegistry"]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_moetune import hooks

    pluginmanager.add_hookspecs(hooks)


def runner_registry(config: pytest.Config) -> RunnerRegistry:
    """The runners of this session: entry points, then ``pytest_moetune_register_runners`` hooks.

    Built on first use, so runs that never tune import no kernel package.
    """
    if RUNNERS_KEY not in config.stash:
        from pytest_moetune.runner import RunnerRegistry, entry_point_runners_with_origin

        registry = RunnerRegistry()
        for origin, runner in entry_point_runners_with_origin():
            registry.add(runner, origin)
        config.hook.pytest_moetune_register_runners(registry=registry, config=config)
        config.stash[RUNNERS_KEY] = registry
    return config.stash[RUNNERS_KEY]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("moetune", "MoE kernel autotuning under EP/DP topologies (pytest-moetune)")
    group.addoption(
        "--moetune",
        action="store_true",
        default=False,
        help="run the tests marked 'moetune' (tuning and throughput regression checks; needs a GPU). "
        "Without it they are skipped.",
    )
    group.addoption(
        "--moetune-fidelity",
        action="store_true",
        default=False,
        help="also run the tests marked 'moetune_fidelity' (tuning-fidelity studies, minutes per case; "
        "with --moetune on a GPU). Without it they are skipped, under every --moetune-profile.",
    )
    group.addoption(
        "--moetune-topology",
        type=topology_list,
        default=None,
        metavar="NAMES",
        help="comma-separated topologies for the moe_topology fixture: ep<N> (pure expert parallel) "
        f"or dep<N> (attention DP + EP), e.g. 'dep2,ep8'. Default: ini moetune_topology, "
        f"else {DEFAULT_TOPOLOGIES}.",
    )
    group.addoption(
        "--moetune-distribution",
        type=distribution_list,
        default=None,
        metavar="SPECS",
        help="comma-separated dummy routing distributions for the dummy_distribution fixture: "
        "balanced, random, zipf:<alpha>, replay:<file.pt|file.npy>. Default: ini "
        f"moetune_distribution, else ${ENV_VAR}, else balanced.",
    )
    parser.addini("moetune_topology", "default for --moetune-topology", type="string", default="")
    parser.addini("moetune_distribution", "default for --moetune-distribution", type="string", default="")


def _from_option_or_ini(
    config: pytest.Config, option: str, ini: str, parse: Callable[[str], tuple[T, ...]]
) -> tuple[T, ...] | None:
    value = config.getoption(option)
    if value is not None:
        return value
    raw = config.getini(ini)
    if not raw.strip():
        return None
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as err:
        raise pytest.UsageError(f"ini option {ini} = {raw!r}: {err}") from None


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS.values():
        config.addinivalue_line("markers", line)
    topologies = _from_option_or_ini(config, "moetune_topology", "moetune_topology", topology_list)
    distributions = _from_option_or_ini(
        config, "moetune_distribution", "moetune_distribution", distribution_list
    )
    config.stash[SELECTION_KEY] = Selection(
        enabled=bool(config.getoption("moetune")),
        topologies=topologies or topology_list(DEFAULT_TOPOLOGIES),
        topologies_explicit=topologies is not None,
        distributions=distributions,
        distributions_explicit=distributions is not None,
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _device_line(workers: int = 0) -> str:
    """The GPU this run would tune on, with the card it gates on (its UUID, which the baselines it
    writes record); with several GPUs, under ``workers`` pytest-xdist workers (one GPU each) all the
    cards, else the one used and how to use the others. Probes CUDA, so only called under
    ``--moetune``."""
    try:
        import torch
    except ImportError:
        return "no GPU (torch not installed)"
    if not torch.cuda.is_available():
        return "no GPU"
    from pytest_moetune.fingerprint import card_id, card_of

    count = torch.cuda.device_count()
    name = torch.cuda.get_device_name(0)
    if count == 1:
        return f"{name} (card {card_id()})"
    if workers > 0:  # worker gw<i> runs on the i-th GPU (pytest_moetune.gpu_pinning)
        cards = ", ".join(card_of(index) for index in range(min(workers, count)))
        who = f"{workers} xdist workers" if workers > 1 else "1 xdist worker"
        return f"{name} x{count} (cards {cards}; {who}, one GPU each: results name theirs)"
    return f"{name} x{count} (card {card_id()}; -n {count} gates on all {count}, one xdist worker per GPU)"


def _selection_args(selection: Selection) -> str:
    topologies = ",".join(t.name for t in selection.topologies)
    try:
        distributions = ",".join(d.name for d in selection.resolved_distributions())
    except ValueError as err:
        distributions = f"<invalid: {err}>"
    return f"--moetune-topology={topologies} --moetune-distribution={distributions}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    selection = config.stash[SELECTION_KEY]
    versions = ", ".join(f"{name} {_version(name)}" for name in ("pytest-moetune", "torch", "triton"))
    if selection.enabled:
        from pytest_moetune.gpu_pinning import xdist_workers

        device = _device_line(xdist_workers(config.option))
        state = "on"
    else:
        device = "not probed (--moetune is off)"
        state = "off: tests marked moetune are skipped"
    return [
        f"moetune: {versions}; device: {device}",
        f"moetune: --moetune {state}; selection: {_selection_args(selection)}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "WORLD_SIZE" not in os.environ:
        launch = pytest.mark.skip(
            reason="moetune_distributed test: launch it on every rank, e.g. "
            "`torchrun --nproc-per-node 2 -m pytest suites/distributed`"
        )
        for item in items:
            if item.get_closest_marker("moetune_distributed") is not None:
                item.add_marker(launch)
    if not config.getoption("moetune_fidelity"):
        study = pytest.mark.skip(
            reason="moetune_fidelity study (minutes per case): runs with --moetune-fidelity"
        )
        for item in items:
            if item.get_closest_marker("moetune_fidelity") is not None:
                item.add_marker(study)
    if config.stash[SELECTION_KEY].enabled:
        return
    skip = pytest.mark.skip(reason="moetune tuning test: runs only with `pytest --moetune` (needs a GPU)")
    for item in items:  # marked `moetune`, or using the gate's `moetune` fixture
        if item.get_closest_marker("moetune") is not None or "moetune" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def _marker_values(
    metafunc: pytest.Metafunc, marker_name: str, parse: Callable[[str], T]
) -> tuple[T, ...] | None:
    marker = metafunc.definition.get_closest_marker(marker_name)
    if marker is None:
        return None
    if not marker.args or marker.kwargs:
        pytest.fail(
            f"{metafunc.definition.nodeid}: @pytest.mark.{marker_name} takes one or more names as "
            f"positional arguments, got args={marker.args!r} kwargs={marker.kwargs!r}",
            pytrace=False,
        )
    try:
        return tuple(dict.fromkeys(parse(arg) for arg in marker.args))
    except ValueError as err:
        pytest.fail(f"{metafunc.definition.nodeid}: @pytest.mark.{marker_name}: {err}", pytrace=False)


def _parametrize(
    metafunc: pytest.Metafunc,
    fixture: str,
    selected: Sequence[T],
    explicit: bool,
    from_marker: Sequence[T] | None,
    ident: Callable[[T], str],
    option: str,
) -> None:
    values: Sequence[T] = selected
    if from_marker is not None:
        values = [v for v in from_marker if v in selected] if explicit else from_marker
    if values:
        metafunc.parametrize(fixture, values, ids=[ident(v) for v in values], indirect=True)
        return
    chosen = ",".join(ident(v) for v in selected)
    offered = ",".join(ident(v) for v in from_marker or ())
    skip = pytest.mark.skip(
        reason=f"{fixture}: this test runs under {offered}, none of which {option}={chosen} selects"
    )
    metafunc.parametrize(fixture, [pytest.param(None, marks=skip, id="unselected")], indirect=True)


def _distribution_id(dist: Distribution) -> str:
    if dist.kind == "replay" and dist.path is not None:
        return f"replay-{dist.path.stem}"
    return dist.name


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if "moe_topology" not in names and "dummy_distribution" not in names:
        return
    selection = metafunc.config.stash[SELECTION_KEY]
    if "moe_topology" in names:
        _parametrize(
            metafunc,
            "moe_topology",
            selection.topologies,
            selection.topologies_explicit,
            _marker_values(metafunc, "moetune_topology", TopologySpec.parse),
            lambda spec: spec.name,
            "--moetune-topology",
        )
    if "dummy_distribution" in names:
        try:
            selected = selection.resolved_distributions()
        except ValueError as err:
            # A bad $MOETUNE_DUMMY_DISTRIBUTION errors the tests that use it at setup; a collection
            # error would interrupt the whole session.
            metafunc.parametrize("dummy_distribution", [err], ids=["invalid-env"], indirect=True)
            return
        _parametrize(
            metafunc,
            "dummy_distribution",
            selected,
            selection.distributions_explicit,
            _marker_values(metafunc, "moetune_distribution", parse_distribution),
            _distribution_id,
            "--moetune-distribution",
        )


@pytest.fixture
def moe_topology(request: pytest.FixtureRequest) -> TopologySpec:
    """The EP/DP layout under test, a :class:`~pytest_moetune.topology.TopologySpec`.

    Parametrized from ``@pytest.mark.moetune_topology(...)``, ``--moetune-topology``, ini
    ``moetune_topology`` (default ``ep1``). Bind it to a model with
    ``moe_topology.bind(num_experts, top_k, ep_rank=0)``.
    """
    return request.param


@pytest.fixture
def dummy_distribution(request: pytest.FixtureRequest) -> Distribution:
    """The dummy routing distribution under test, a :class:`~pytest_moetune.distributions.Distribution`.

    Parametrized from ``@pytest.mark.moetune_distribution(...)``, ``--moetune-distribution``, ini
    ``moetune_distribution``, ``$MOETUNE_DUMMY_DISTRIBUTION`` (default ``balanced``). Pass it to
    ``dummy_topk(num_tokens, topology, dummy_distribution)``.
    """
    if isinstance(request.param, ValueError):
        pytest.fail(str(request.param), pytrace=False)
    return request.param


@pytest.fixture(scope="session")
def moetune_runners(pytestconfig: pytest.Config) -> RunnerRegistry:
    """The registered MoE kernel runners (a :class:`~pytest_moetune.runner.RunnerRegistry`):
    ``moetune_runners.get("fused_moe")``, or iterate. Registered by ``conftest.py`` hooks
    (``pytest_moetune_register_runners``) and the ``pytest_moetune.runners`` entry-point group."""
    return runner_registry(pytestconfig)
