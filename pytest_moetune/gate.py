"""The regression gate inside pytest: options, the ``moetune`` fixture, baselines, reports, xdist.

Registered by :mod:`pytest_moetune.plugin` (``pytest_plugins``). Imports nothing heavy: torch, the
tuner and the harness load when a test first asks for the ``moetune`` fixture.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_moetune.argtypes import argparse_type
from pytest_moetune.verdict import DEFAULT_THRESHOLD, INCONCLUSIVE, MIN_ROUNDS, NEW, REGRESSED

if TYPE_CHECKING:
    from pytest_moetune.ceilings import Ceilings
    from pytest_moetune.compile_claims import CompileClaims
    from pytest_moetune.fingerprint import EnvironmentFingerprint
    from pytest_moetune.harness import CheckResult, Gate, MoECase
    from pytest_moetune.timing import Timer

UPDATE_MODES = ("changed", "all", "prune")
PROFILES = ("quick", "full")
RESULTS_KEY = "moetune_results"
CLAIMS_INPUT = "moetune_compile_claims"  # workerinput key: the compile-claims folder
NO_GPU_REASON = "no CUDA GPU: the moetune gate"
"""How a gated test's skip (or, under ``--moetune-strict``, its error) without a GPU begins."""


class MoetuneGateWarning(UserWarning):
    """A gated case could not be judged (inconclusive) or had no baseline."""


def threshold_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # not a number: the message below, not float()'s
    if not 0 < value < 1:
        raise ValueError(f"threshold must be a fraction in (0, 1), e.g. 0.05 for 5%; got {text!r}")
    return value


def update_mode(text: str) -> str:
    if text not in UPDATE_MODES:
        raise ValueError(
            f"unknown baseline update mode {text!r}; valid: {', '.join(UPDATE_MODES)} (a path right after "
            "the option is read as its mode: put paths first, or write --moetune-update-baselines=changed)"
        )
    return text


def rounds_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < MIN_ROUNDS:
        raise ValueError(f"the gate needs a whole number of rounds, at least {MIN_ROUNDS}; got {text!r}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("moetune")
    group.addoption(
        "--moetune-threshold",
        type=argparse_type(threshold_value),
        default=None,
        metavar="FRACTION",
        help="slowdown that fails a case, when also beyond 3x its measured noise "
        f"(default ini, else {DEFAULT_THRESHOLD})",
    )
    group.addoption(
        "--moetune-strict",
        action="store_true",
        default=False,
        help="fail cases with no baseline (new), cases too noisy to judge (inconclusive), and gated tests "
        "where there is no GPU",
    )
    group.addoption(
        "--moetune-update-baselines",
        nargs="?",
        const="changed",
        default=None,
        type=argparse_type(update_mode),
        metavar="MODE",
        help="rewrite baselines from this run: 'changed' (default: new entries and those that moved "
        "beyond noise), 'all', or 'prune' (changed, and drop entries of the run's modules that no "
        "case checked; refuses a filtered run)",
    )
    group.addoption(
        "--moetune-baselines",
        default=None,
        metavar="DIR",
        help="baseline root, relative to the current folder (default: ini moetune_baselines, relative to "
        "the rootdir, else baselines)",
    )
    group.addoption(
        "--moetune-cache",
        default=None,
        metavar="PATH",
        help="tuning cache file (default $MOETUNE_CACHE, else pytest-moetune/tuning.json under "
        "$XDG_CACHE_HOME or ~/.cache)",
    )
    group.addoption(
        "--moetune-rounds",
        type=argparse_type(rounds_value),
        default=7,
        metavar="N",
        help="timed rounds per measurement (>= 5; default 7)",
    )
    group.addoption(
        "--moetune-report",
        default=None,
        metavar="PATH",
        help="write the gate's results as PATH.json and PATH.md",
    )
    group.addoption(
        "--moetune-peer",
        action="store_true",
        default=False,
        help="also time each case's peer (the runner's `peer`, e.g. a torch._grouped_mm layer) in the "
        "same run, for the report's peer column",
    )
    group.addoption(
        "--moetune-plot",
        default=None,
        metavar="PATH.png",
        help="draw throughput vs tokens per case family, baseline vs now (needs matplotlib)",
    )
    group.addoption(
        "--moetune-profile",
        choices=PROFILES,
        default=None,
        help="how much of the gated suites to run: 'quick' (default; a CI gate) or 'full' "
        "(the whole matrix). Suites read it through the moetune_profile fixture.",
    )
    parser.addini("moetune_threshold", "default for --moetune-threshold", default="")
    parser.addini("moetune_profile", "default for --moetune-profile (quick or full)", default="quick")
    parser.addini("moetune_baselines", "baseline root, relative to rootdir", default="baselines")


GATE_ONLY_OPTIONS = (
    ("moetune_update_baselines", "--moetune-update-baselines"),
    ("moetune_strict", "--moetune-strict"),
    ("moetune_report", "--moetune-report"),
    ("moetune_plot", "--moetune-plot"),
    ("moetune_peer", "--moetune-peer"),
)
"""Options that act only on the gate: given without ``--moetune`` they do nothing, and a warning says so."""


def _warn_of_unused_gate_options(config: pytest.Config) -> None:
    """Without ``--moetune``: a config warning naming the :data:`GATE_ONLY_OPTIONS` given."""
    unused = [flag for dest, flag in GATE_ONLY_OPTIONS if config.getoption(dest) not in (None, False)]
    if unused:
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"{', '.join(unused)} act only on the moetune gate, which runs with --moetune: "
                "without it they do nothing"
            ),
            stacklevel=2,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("moetune"):
        _warn_of_unused_gate_options(config)
    else:
        from pytest_moetune.gpu_pinning import check_worker_count, pin_worker, visible_gpus, xdist_workers

        try:
            if _is_worker(config):
                workerinput = config.workerinput  # type: ignore[attr-defined]
                pin_worker(workerinput["workerid"], int(workerinput["workercount"]), visible_gpus())
            elif workers := xdist_workers(config.option):
                check_worker_count(workers, visible_gpus())  # before xdist starts a worker
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None
    config.addinivalue_line(
        "markers", "moetune_threshold(fraction): this test's regression threshold, e.g. 0.1 for 10%."
    )
    raw = config.getini("moetune_threshold")
    if config.getoption("moetune_threshold") is None and raw.strip():
        try:
            threshold_value(raw)
        except ValueError as err:
            raise pytest.UsageError(f"ini option moetune_threshold = {raw!r}: {err}") from None
    profile = config.getini("moetune_profile").strip()
    if profile not in PROFILES:
        raise pytest.UsageError(
            f"ini option moetune_profile = {profile!r}: choose one of {', '.join(PROFILES)}"
        )
    config.stash[STATE_KEY] = GateState(config)
    if config.getoption("moetune"):  # without it the gate adds no hook to any test's report
        config.pluginmanager.register(config.stash[STATE_KEY], "moetune-gate-state")
        if not _is_worker(config):
            _check_output_paths(config.stash[STATE_KEY])


PLOT_NEEDS = "--moetune-plot needs matplotlib (pip install matplotlib)"


def _check_output_paths(state: GateState) -> None:
    """Before any tuning: a ``pytest.UsageError`` naming the option and the value whose file the run
    could not write at its end (the report, the plot, the tuning cache, the baselines when updating),
    or whose baseline root is a file."""
    from pytest_moetune.fileio import unwritable_reason, wrong_kind
    from pytest_moetune.report import report_paths

    config = state.config
    checks: list[tuple[str, str | None]] = [("--moetune-cache", unwritable_reason(state.cache_path))]
    root = state.baseline_root
    if config.getoption("moetune_update_baselines") is not None:
        checks.append(("--moetune-baselines", unwritable_reason(root, folder=True)))
    else:
        checks.append(("--moetune-baselines", wrong_kind(root, folder=True)))
    report = config.getoption("moetune_report")
    if report:
        checks += [("--moetune-report", unwritable_reason(path)) for path in report_paths(Path(report))]
    plot = config.getoption("moetune_plot")
    if plot:
        checks.append(("--moetune-plot", unwritable_reason(plot) or _unsupported_plot_format(Path(plot))))
    for option, why in checks:
        if why is not None:
            raise pytest.UsageError(f"{option}: {why}")


def _check_gpu_baseline_folder(state: GateState, slug: str) -> None:
    """When updating baselines, once this GPU's slug is known and before anything is tuned: stop the
    run as a usage error if its folder under the baseline root (checked at startup) could not take
    the new files (a file in its place, or not writable)."""
    from pytest_moetune.fileio import unwritable_reason

    if state.config.getoption("moetune_update_baselines") is None:
        return
    why = unwritable_reason(state.baseline_root / slug, folder=True)
    if why is not None:
        pytest.exit(f"--moetune-baselines: {why}", returncode=pytest.ExitCode.USAGE_ERROR)


def _unsupported_plot_format(path: Path) -> str | None:
    """Why matplotlib could not save ``path`` (its suffix names no format it writes), or ``None``."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return PLOT_NEEDS
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        given = path.suffix or "a name without a suffix"
        return f"{path}: matplotlib writes {', '.join(sorted(formats))}, not {given}"
    return None


class GateState:
    """Per-process state of the gate (one per xdist worker; the controller merges)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list[CheckResult] = []
        self.gate: Gate | None = None
        self._baselines: dict[Path, dict[str, Any]] = {}
        self.tuners: dict[str, Any] = {}  # runner name -> Tuner, sharing one cache
        self.deselected = 0
        self.update_report: list[str] = []
        self.update_failed = False  # a baseline file could not be written: the run fails
        self.claims_folder: Path | None = None  # xdist controller: the workers' compile claims
        self.skipped_without_gpu = 0  # gated tests skipped for want of a GPU (controller: all workers')

    @property
    def threshold(self) -> float:
        option = self.config.getoption("moetune_threshold")
        if option is not None:
            return option
        raw = self.config.getini("moetune_threshold")
        return threshold_value(raw) if raw.strip() else DEFAULT_THRESHOLD

    @property
    def baseline_root(self) -> Path:
        """``--moetune-baselines`` relative to the folder pytest was started in, else the ini's
        ``moetune_baselines`` relative to the rootdir."""
        option = self.config.getoption("moetune_baselines")
        if option:
            return self.config.invocation_params.dir / Path(option).expanduser()
        return self.config.rootpath / Path(self.config.getini("moetune_baselines")).expanduser()

    @property
    def cache_path(self) -> Path:
        """``--moetune-cache`` (``~`` expanded, as ``$MOETUNE_CACHE`` is), else
        :func:`~pytest_moetune.cache.default_cache_path`."""
        from pytest_moetune.cache import default_cache_path

        option = self.config.getoption("moetune_cache")
        return Path(option).expanduser() if option else default_cache_path()

    def baseline_path(self, slug: str, module: str) -> Path:
        from pytest_moetune.baseline import baseline_file

        return baseline_file(self.baseline_root, slug, module)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count the gated tests skipped for want of a GPU, for the summary's line (a hook: the state
        is registered as a plugin; under xdist the controller sees every worker's reports)."""
        if report.skipped and NO_GPU_REASON in str(report.longrepr):
            self.skipped_without_gpu += 1

    def baseline_document(self, path: Path) -> dict[str, Any] | None:
        from pytest_moetune.baseline import read_baseline

        if path not in self._baselines:
            self._baselines[path] = read_baseline(path) or {}
        return self._baselines[path] or None


STATE_KEY = pytest.StashKey[GateState]()


def module_key(config: pytest.Config, path: Path) -> str:
    """``suites/perf/test_x.py`` -> ``suites.perf.test_x`` (rootdir-relative)."""
    try:
        relative = path.resolve().relative_to(config.rootpath.resolve())
    except ValueError:
        relative = Path(path.name)
    return ".".join(relative.with_suffix("").parts)


def selected_profile(config: pytest.Config) -> str:
    """``--moetune-profile``, else ini ``moetune_profile`` (default ``quick``)."""
    return config.getoption("moetune_profile") or config.getini("moetune_profile").strip()


@pytest.fixture(scope="session")
def moetune_profile(pytestconfig: pytest.Config) -> str:
    """``"quick"`` or ``"full"``: how much of a gated suite to run (``--moetune-profile``)."""
    return selected_profile(pytestconfig)


@pytest.fixture(scope="session")
def moetune_device() -> Any:
    """Where the gate builds inputs: ``"cuda"``. Override in a conftest to gate a CPU runner."""
    return "cuda"


def require_gpu(config: pytest.Config, what: str, *, fixture_hint: bool = True) -> None:
    """Skip the asking test where torch sees no CUDA GPU (``what`` the gate does there: "times
    kernels"); under ``--moetune-strict`` fail it instead, so a CI runner that lost its GPU fails its
    gate rather than passing with every case skipped. ``fixture_hint``: the skip says which fixtures
    to override to run the test on the CPU (it asked through one of them)."""
    import torch

    if torch.cuda.is_available():
        return
    reason = f"{NO_GPU_REASON} {what} on a GPU"
    if config.getoption("moetune_strict"):
        pytest.fail(f"{reason} (--moetune-strict: a gate that can judge no case fails)", pytrace=False)
    if not fixture_hint:
        pytest.skip(reason)
    pytest.skip(f"{reason} (to test a suite's wiring on the CPU, override moetune_timer, moetune_ceilings "
                "and moetune_device: README, 'Plugging in your own kernel')")  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under ``--moetune``, a test marked ``moetune`` that does not use the ``moetune`` fixture needs
    the GPU as much as one that does: without one it is skipped (failed under ``--moetune-strict``)
    like them, before its fixtures are set up. Tests that use the fixture are gated through
    ``moetune_timer`` and ``moetune_ceilings``, which a conftest may override to gate on the CPU."""
    config = item.config
    if not config.getoption("moetune") or item.get_closest_marker("moetune") is None:
        return
    if "moetune" in getattr(item, "fixturenames", ()):
        return
    try:
        require_gpu(config, "runs tests marked moetune", fixture_hint=False)
    except pytest.skip.Exception as skipped:
        skipped._use_item_location = True  # name the test, as a skip from a fixture or a marker does
        raise


@pytest.fixture(scope="session")
def moetune_timer(pytestconfig: pytest.Config) -> Timer:
    """How the gate times a launch: CUDA events around CUDA-graph replays, ``--moetune-rounds`` rounds."""
    from pytest_moetune.timing import CudaGraphTimer

    require_gpu(pytestconfig, "times kernels")
    return CudaGraphTimer(rounds=pytestconfig.getoption("moetune_rounds"), warmup_us=50_000.0)


@pytest.fixture(scope="session")
def moetune_ceilings(pytestconfig: pytest.Config) -> Ceilings:
    """This session's copy bandwidth and bf16 matmul rate, measured once in >= 5 rounds."""
    from pytest_moetune.ceilings import measure_ceilings

    require_gpu(pytestconfig, "measures ceilings")
    return measure_ceilings(rounds=pytestconfig.getoption("moetune_rounds"))


@pytest.fixture(scope="session")
def moetune_card() -> str:
    """This physical card (:func:`~pytest_moetune.fingerprint.card_id`, its UUID): baseline entries
    record it, and the gate notes a baseline measured on another card of the same model."""
    from pytest_moetune.fingerprint import card_id

    return card_id()


@pytest.fixture(scope="session")
def moetune_fingerprint() -> EnvironmentFingerprint:
    """The environment (GPU, SM, driver, torch, triton, plugin) baselines and caches are tied to."""
    from pytest_moetune.fingerprint import EnvironmentFingerprint

    return EnvironmentFingerprint.current()


def _marker_threshold(marker: pytest.Mark) -> float:
    """The fraction of ``@pytest.mark.moetune_threshold(fraction)``; a test failure naming the marker
    and what is wrong with its arguments otherwise."""
    why = None
    if len(marker.args) != 1 or marker.kwargs:
        why = f"takes one fraction, e.g. moetune_threshold(0.1), got {marker.args!r} {marker.kwargs or ''}"
    else:
        try:
            return threshold_value(str(marker.args[0]))
        except ValueError as err:
            why = str(err)
    pytest.fail(f"@pytest.mark.moetune_threshold: {why.rstrip()}", pytrace=False)


class Harness:
    """What the ``moetune`` fixture gives a test: ``check(case)``."""

    def __init__(self, state: GateState, request: pytest.FixtureRequest, gate: Gate) -> None:
        self._state = state
        self._request = request
        self._gate = gate

    def check(self, case: MoECase, *, threshold: float | None = None) -> CheckResult:
        """Tune ``case`` (through the cache), measure its tactic, judge it against the baseline,
        record it. A regression fails the test (not while updating baselines); ``new`` and
        ``inconclusive`` warn, or fail under ``--moetune-strict``."""
        from pytest_moetune.plugin import runner_registry

        config = self._state.config
        if threshold is None:
            marker = self._request.node.get_closest_marker("moetune_threshold")
            if marker is not None:
                threshold = _marker_threshold(marker)
        from pytest_moetune.baseline import BaselineError
        from pytest_moetune.cache import CacheWriteError

        runner = runner_registry(config).get(case.runner)
        module = module_key(config, self._request.node.path)
        file_error = None
        try:
            result = self._gate.check(runner, case, module, threshold)
        except (BaselineError, CacheWriteError) as err:  # a file's fault, not the plugin's: no traceback
            file_error = str(err)
        if file_error is not None:
            pytest.fail(file_error, pytrace=False)
        self._state.results.append(result)
        if config.pluginmanager.hasplugin("benchmark"):
            from pytest_moetune.benchmark_bridge import record_rounds

            record_rounds(config, self._request.node, case, result)
        updating = config.getoption("moetune_update_baselines") is not None
        strict = config.getoption("moetune_strict")
        if result.verdict == REGRESSED and not updating:
            pytest.fail(result.message(), pytrace=False)
        if result.verdict in (NEW, INCONCLUSIVE) and not updating:
            why = "no baseline" if result.verdict == NEW else "too noisy to judge"
            if strict:
                pytest.fail(f"{result.message()}\n  ({why}; --moetune-strict)", pytrace=False)
            warnings.warn(MoetuneGateWarning(f"{result.case}: {result.verdict} ({why})"), stacklevel=2)
        return result


@pytest.fixture
def moetune(
    request: pytest.FixtureRequest,
    moetune_timer: Timer,
    moetune_ceilings: Ceilings,
    moetune_fingerprint: EnvironmentFingerprint,
    moetune_device: Any,
    moetune_card: str,
) -> Harness:
    """The regression gate: ``moetune.check(MoECase(model, topology, num_tokens, ...))`` tunes the
    case through the cache, measures it in ``--moetune-rounds`` rounds and judges it against
    ``baselines/<gpu>/<module>.json``. Tests that use it run only with ``--moetune``."""
    state = request.config.stash[STATE_KEY]
    if state.gate is None:
        state.gate = _make_gate(
            state, moetune_timer, moetune_ceilings, moetune_fingerprint, moetune_device, moetune_card
        )
    return Harness(state, request, state.gate)


def _worker_stagger(config: pytest.Config) -> tuple[int, int]:
    """``(worker index, worker count)`` under pytest-xdist, else ``(0, 1)``: see ``Tuner(stagger=)``."""
    if not _is_worker(config):
        return (0, 1)
    from pytest_moetune.gpu_pinning import worker_index

    workerinput = config.workerinput  # type: ignore[attr-defined]
    return (worker_index(workerinput["workerid"]), int(workerinput["workercount"]))


def _worker_claims(config: pytest.Config) -> CompileClaims | None:
    """The run's shared :class:`~pytest_moetune.compile_claims.CompileClaims` in an xdist worker
    (the controller made the folder: :func:`pytest_configure_node`), else ``None``."""
    folder = getattr(config, "workerinput", {}).get(CLAIMS_INPUT)
    if folder is None:
        return None
    from pytest_moetune.compile_claims import CompileClaims

    return CompileClaims(folder)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller, before a worker starts: hand it the run's compile-claims folder, made once
    per run and removed in :func:`pytest_unconfigure`."""
    state = node.config.stash.get(STATE_KEY, None)
    if state is None or not node.config.getoption("moetune"):
        return
    if state.claims_folder is None:
        state.claims_folder = Path(tempfile.mkdtemp(prefix="pytest-moetune-claims-"))
    node.workerinput[CLAIMS_INPUT] = str(state.claims_folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None and state.claims_folder is not None:
        shutil.rmtree(state.claims_folder, ignore_errors=True)


def _make_gate(
    state: GateState,
    timer: Timer,
    ceilings: Ceilings,
    fingerprint: EnvironmentFingerprint,
    device: Any,
    card: str,
) -> Gate:
    from pytest_moetune.cache import TuningCache
    from pytest_moetune.harness import Gate
    from pytest_moetune.tuner import Tuner

    _check_gpu_baseline_folder(state, fingerprint.slug)
    store = TuningCache(state.cache_path, fingerprint)

    tuning_timer = timer.for_tuning() if hasattr(timer, "for_tuning") else timer

    def tuner_for(runner: Any) -> Tuner:
        if runner.name not in state.tuners:
            state.tuners[runner.name] = Tuner(
                runner,
                store,
                tuning_timer,
                device=device,
                stagger=_worker_stagger(state.config),
                claims=_worker_claims(state.config),
                progress=False,
            )
        return state.tuners[runner.name]

    def baseline_for(module: str, case_id: str) -> dict[str, Any] | None:
        document = state.baseline_document(state.baseline_path(fingerprint.slug, module))
        return None if document is None else document["entries"].get(case_id)

    def baselines_elsewhere(module: str, case_id: str) -> list[str]:
        slugs = []
        for folder in sorted(
            p for p in state.baseline_root.glob("*") if p.is_dir() and p.name != fingerprint.slug
        ):
            try:
                document = state.baseline_document(state.baseline_path(folder.name, module))
            except ValueError:
                continue
            if document is not None and case_id in document["entries"]:
                slugs.append(folder.name)
        return slugs

    return Gate(
        tuner_for,
        timer,
        ceilings,
        baseline_for,
        baselines_elsewhere,
        fingerprint.to_dict(),
        device,
        state.threshold,
        time_peer=state.config.getoption("moetune_peer"),
        card=card,
    )


# --- collection, xdist, end of session -------------------------------------------------------


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        config = items[0].config
        config.stash[STATE_KEY].deselected += len(items)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect the results a worker recorded."""
    from pytest_moetune.harness import CheckResult

    state = node.config.stash[STATE_KEY]
    for data in getattr(node, "workeroutput", {}).get(RESULTS_KEY, []):
        state.results.append(CheckResult.from_dict(data))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if _is_worker(config):
        config.workeroutput[RESULTS_KEY] = [r.to_dict() for r in state.results]  # type: ignore[attr-defined]
        return
    if not state.results:
        return
    # The report and plot first: they hold the run's measurements whatever happens to the baselines.
    report = config.getoption("moetune_report")
    if report:
        from pytest_moetune.report import write_reports

        write_reports(Path(report), state.results)
    plot = config.getoption("moetune_plot")
    plot_line = []
    if plot:
        from pytest_moetune.plot import write_plot

        plot_line = [f"moetune: plot written to {write_plot(Path(plot), state.results)}"]
    mode = config.getoption("moetune_update_baselines")
    if mode is not None and exitstatus == pytest.ExitCode.INTERRUPTED:
        state.update_report = [
            f"moetune: baselines not updated: the run was interrupted ({len(state.results)} cases measured"
            + (", in the report)" if report else ")")
        ]
    elif mode is not None:
        from pytest_moetune.baseline_update import update_baselines

        state.update_report = update_baselines(state, mode, exitstatus)
        if state.update_failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    state.update_report += plot_line


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Under ``--moetune``: where this run reads and writes baselines and its tuning cache."""
    state = config.stash.get(STATE_KEY, None)
    if state is None or not config.getoption("moetune"):
        return []
    return [f"moetune: baselines {state.baseline_root}; tuning cache {state.cache_path}"]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or _is_worker(config):
        return
    if not state.results and state.skipped_without_gpu:
        terminalreporter.section("moetune gate")
        terminalreporter.write_line(
            f"moetune: no case was judged: {state.skipped_without_gpu} gated tests skipped, no CUDA GPU "
            "(--moetune-strict makes this a failure, for CI)"
        )
    if not state.results:
        return
    from pytest_moetune.report import summary_lines

    terminalreporter.section("moetune gate")
    for line in summary_lines(state.results):
        terminalreporter.write_line(line)
    for line in state.update_report:
        terminalreporter.write_line(line)
