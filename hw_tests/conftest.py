"""The hardware-in-the-loop suite's options, fixtures and report hook.

    pytest hw_tests --board hw_tests/boards/virtual.toml --out DIR     (or: hostctl hil)

A board file says where the board is; the tests ask for a `Board` and its `BoardAccess` and do
not care whether that is this machine, an arm64 rootfs under qemu-user, or a Pi over SSH. Each
test records what it measured into the session's `HilReport`; at the end of the session
hil-report.json and hil-report.md are written into --out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from host.deploy.access import BoardAccess, open_shell
from host.deploy.board import Board, BoardError, load_board
from host.hil.report import HilReport
from host.hil.run import board_work_dir

HERE = Path(__file__).resolve().parent
DEFAULT_BOARD = HERE / "boards" / "virtual.toml"
REPORT_KEY = pytest.StashKey[HilReport]()
OUT_KEY = pytest.StashKey[Path]()
WRITTEN_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop")
    group.addoption(
        "--board",
        default=str(DEFAULT_BOARD),
        help="board file (TOML, see docs/boards.md) [default: hw_tests/boards/virtual.toml]",
    )
    group.addoption(
        "--out",
        default=".",
        help="where hil-report.json and hil-report.md go [default: the current directory]",
    )
    group.addoption(
        "--skip-deps",
        action="store_true",
        help="the board's Python already has the engine and our dependencies: deploy our wheel "
        "only (as a board on this machine always does) [default: every dependency wheel for "
        "a remote board]",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        board = load_board(config.getoption("--board"))
    except BoardError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[REPORT_KEY] = HilReport(board)
    config.stash[OUT_KEY] = Path(config.getoption("--out"))


def pytest_report_header(config: pytest.Config) -> str:
    b = config.stash[REPORT_KEY].board
    return (
        f"hil board: {b.name} ({b.arch}, Python {b.python}, engine {b.resolved_engine}, "
        f"{b.connection.describe()}) from {b.path}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """One outcome per test: the call's, or the setup's when a fixture skipped or failed it."""
    report: pytest.TestReport = yield
    if report.when == "call" or report.failed or report.skipped:
        name = item.nodeid.split("::", 1)[-1]
        if report.when == "teardown":
            name += " (teardown)"
        item.config.stash[REPORT_KEY].outcome(
            name, report.outcome, report.duration, _reason(report)
        )
    return report


def _reason(report: pytest.TestReport) -> str:
    """A skip's reason, or the first line of a failure."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(report.longrepr)
        return (text.splitlines() or [""])[0][:300]
    return ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the reports, also when tests failed: a failing board is worth a report too."""
    hil = session.config.stash.get(REPORT_KEY, None)
    if hil is None or session.config.option.collectonly:
        return
    json_path, md_path = hil.write(session.config.stash[OUT_KEY])
    session.config.stash[WRITTEN_KEY] = f"hil report: {json_path} and {md_path}"


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if WRITTEN_KEY in config.stash:
        terminalreporter.write_line(config.stash[WRITTEN_KEY])


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hil_report(pytestconfig: pytest.Config) -> HilReport:
    """The session's report: `hil_report.record(figure=value)`."""
    return pytestconfig.stash[REPORT_KEY]


@pytest.fixture(scope="session")
def board(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Board:
    """The board under test; a board that is this machine gets a throwaway work directory."""
    loaded = pytestconfig.stash[REPORT_KEY].board
    return board_work_dir(loaded, tmp_path_factory.mktemp("board"))


@pytest.fixture(scope="session")
def board_access(board: Board) -> Iterator[BoardAccess]:
    """How to run commands on the board; the whole suite skips where it cannot be opened."""
    try:
        access = open_shell(board, "the HIL suite")
    except BoardError as exc:
        pytest.skip(f"board {board.name} cannot be reached: {exc}")
    with access:
        yield access


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """smallcnn split 3 on 3x32x32, exported once per session."""
    from host.export import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "smallcnn-split3"
    export_bundle(ExportOptions(model="smallcnn", split=3, input_shape=(3, 32, 32), lr=3e-3), out)
    return out


@dataclass(frozen=True)
class Deployment:
    """A release deployed on the board: where, and how long it took."""

    work: str  # the board's work directory, resolved on the board
    release: str
    deploy_s: float
    sent: int
    skip_deps: bool


@pytest.fixture(scope="session")
def deployed(
    board: Board,
    board_access: BoardAccess,
    exported_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Deployment:
    """The exported bundle, made into a deploy bundle and deployed to the board.

    A board on this machine (the virtual board, a chroot) brings its own engine, so its deploy
    bundle carries only our wheel (`--skip-deps`); a remote board gets every dependency wheel
    unless the suite's `--skip-deps` says it has them.
    """
    from host.deploy.offline import make_deploy_bundle
    from host.deploy.release import deploy

    skip_deps = board.connection.kind == "local" or request.config.getoption("--skip-deps")
    t0 = time.perf_counter()
    made = make_deploy_bundle(
        board, exported_bundle, tmp_path_factory.mktemp("deploy") / "bundle", skip_deps=skip_deps
    )
    made_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = deploy(board, made.root, access=board_access)
    work = result.release_dir.rsplit("/releases/", 1)[0]
    return Deployment(
        work=work,
        release=result.release,
        deploy_s=round(time.perf_counter() - t0 + made_s, 3),
        sent=len(result.sent),
        skip_deps=skip_deps,
    )


@dataclass(frozen=True)
class TrainedRun:
    """The suite's one training run on the board, ended with a model out."""

    report: dict  # the merged run report, with `hil_figures`
    options: object  # the HilRunOptions it ran with
    model_dir: Path  # the whole model the host assembled (hostctl serve --model-out)
    board_model_dir: Path  # the board's own edge.onnx + edge.json (edge-runtime run --model-out)


@pytest.fixture(scope="session")
def trained_run(
    board: Board,
    board_access: BoardAccess,
    deployed: Deployment,
    exported_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainedRun:
    """Train with the edge on the board and the cloud here, then write the model out: once per
    session (the training test and the inference test share it)."""
    from host.hil.run import HilRunOptions, link_capability, train_on_board

    why = link_capability(board)
    if why is not None:
        pytest.skip(why)
    state = tmp_path_factory.mktemp("run")
    opts = HilRunOptions()
    report = train_on_board(
        board,
        board_access,
        deployed.work,
        exported_bundle,
        state,
        opts,
        model_out=state / "model",
    )
    return TrainedRun(report, opts, state / "model", state / "board-model")
