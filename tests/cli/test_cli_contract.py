"""What both CLIs promise: --version, light --help, one error-to-exit-code mapping, one line each.

The help checks run real processes under `-X importtime`, which names every module imported.
"""

from __future__ import annotations

import ast
import importlib.metadata
import signal
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.command_line import CommandGroup, classify, run_cli
from edge_runtime.errors import HiertrainError, Interrupted, UsageFault

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "onnx", "onnxruntime")
HOST_COMMANDS = (
    "export", "inspect", "serve", "demo", "bench", "plan", "bundle", "deploy", "hil", "privacy",
    "model", "key", "report", "doctor",
)  # fmt: skip
EDGE_COMMANDS = ("run", "agent", "infer", "doctor")


def imported_modules(module: str, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m module args`; the process and every module it imported."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    # Lines read "import time: self | cumulative | <indent>name".
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return out, names


def heavy_in(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


@pytest.mark.parametrize(
    ("module", "args"),
    [("host.cli", ("--help",))]
    + [("host.cli", (cmd, "--help")) for cmd in HOST_COMMANDS]
    + [("edge_runtime.cli", ("--help",))]
    + [("edge_runtime.cli", (cmd, "--help")) for cmd in EDGE_COMMANDS],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_help_imports_neither_torch_nor_onnx(module: str, args: tuple[str, ...]) -> None:
    out, names = imported_modules(module, *args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Usage:" in out.stdout
    assert "click" in names  # the parse of -X importtime found the imports
    assert heavy_in(names) == [], heavy_in(names)


def test_both_clis_list_their_commands() -> None:
    host, _ = imported_modules("host.cli", "--help")
    for cmd in HOST_COMMANDS:
        assert f"  {cmd} " in host.stdout, cmd
    edge, _ = imported_modules("edge_runtime.cli", "--help")
    for cmd in EDGE_COMMANDS:
        assert f"  {cmd} " in edge.stdout, cmd


@pytest.mark.parametrize(
    ("module", "prog"), [("host.cli", "hostctl"), ("edge_runtime.cli", "edge-runtime")]
)
def test_version_is_the_installed_distributions(module: str, prog: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{prog} {importlib.metadata.version('hiertrain')}"


def test_no_job_imports_host_cli() -> None:
    """host/cli.py registers the jobs' commands; a job importing it back would be a cycle."""
    offenders = []
    for path in sorted((REPO / "host").rglob("*.py")):
        if path == REPO / "host" / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if "host.cli" in names:
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_every_job_registers_the_same_way() -> None:
    from host.cli import JOB_COMMANDS, cli

    for name in JOB_COMMANDS:
        module = importlib.import_module(name)
        assert name.endswith(".commands") and module.COMMANDS, name
        for command in module.COMMANDS:
            assert cli.commands[command.name] is command
    assert set(cli.commands) == set(HOST_COMMANDS)


# -- the one mapping -----------------------------------------------------------------------


def typed_errors() -> list[tuple[Exception, int, str]]:
    """One instance of every typed error the CLIs meet, with its exit code and label."""
    from edge_runtime.agent import AgentError
    from edge_runtime.bundle import BundleError
    from edge_runtime.data import DataError
    from edge_runtime.engines import EngineError
    from edge_runtime.link import HandshakeRefused, LinkError, LinkTimeout
    from host.deploy import BoardAccessError, BoardError, DeployError
    from host.hil.run import HilError
    from host.linkemu import LinkSpecError, NamespaceLinkError
    from host.plan import ProfileError
    from host.session.links import EmulationUnavailable
    from host.session.runner import EdgeRunFailed
    from models import ModelSpecError

    return [
        (UsageFault("u"), 2, "error"),
        (DataError("d"), 2, "error"),
        (BoardError("b"), 2, "error"),
        (ProfileError("p"), 2, "error"),
        (LinkSpecError("l"), 2, "error"),
        (EmulationUnavailable("e"), 2, "error"),
        (ModelSpecError("m"), 2, "error"),  # models/ cannot derive from edge_runtime: the table
        (HiertrainError("h"), 1, "failed"),
        (BundleError("b"), 1, "failed"),
        (LinkError("l"), 1, "failed"),
        (LinkTimeout("t"), 1, "failed"),
        (EngineError("e"), 1, "failed"),
        (AgentError("a"), 1, "failed"),
        (DeployError("copy", "disk full"), 1, "failed"),
        (BoardAccessError("a"), 1, "failed"),
        (HilError("h"), 1, "failed"),
        (NamespaceLinkError("n"), 1, "failed"),
        (EdgeRunFailed("the edge runtime exited with 2"), 1, "failed"),
        (HandshakeRefused("auth", "wrong key"), 1, "refused by the host"),
        (FileNotFoundError(2, "No such file or directory", "x.json"), 1, "failed"),
        (Interrupted("continue with --resume"), 130, "interrupted"),
    ]


def test_every_typed_error_has_one_exit_code_and_label() -> None:
    for exc, code, label in typed_errors():
        assert classify(exc)[:2] == (code, label), type(exc).__name__
        assert classify(exc)[2] == str(exc)


def test_the_typed_errors_keep_their_old_bases() -> None:
    """Code that catches ValueError or RuntimeError still catches these."""
    from edge_runtime.data import DataError
    from host.linkemu import LinkSpecError, NamespaceLinkError
    from host.plan import ProfileError
    from host.session.runner import EdgeRunFailed

    assert all(issubclass(e, ValueError) for e in (DataError, LinkSpecError, ProfileError))
    assert all(issubclass(e, RuntimeError) for e in (EdgeRunFailed, NamespaceLinkError))


def group_raising(exc: BaseException) -> CommandGroup:
    @click.group(cls=CommandGroup, prog="prog")
    def group() -> None:
        """A group with one command that raises."""

    @group.command()
    def go() -> None:
        raise exc

    return group


@pytest.mark.parametrize(("exc", "code", "label"), typed_errors(), ids=lambda v: type(v).__name__)
def test_a_command_error_is_one_line_and_its_code(exc: Exception, code: int, label: str) -> None:
    result = CliRunner().invoke(group_raising(exc), ["go"])
    assert result.exit_code == code
    assert result.output == f"prog: {label}: {exc}\n"


def test_an_unexpected_error_is_one_line_naming_its_type(monkeypatch) -> None:
    monkeypatch.delenv("HIERTRAIN_TRACEBACK", raising=False)
    result = CliRunner().invoke(group_raising(ZeroDivisionError("division by zero")), ["go"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("prog: failed: ZeroDivisionError: division by zero")
    assert "HIERTRAIN_TRACEBACK=1" in lines[0]


def test_hiertrain_traceback_lets_an_unexpected_error_through(monkeypatch) -> None:
    monkeypatch.setenv("HIERTRAIN_TRACEBACK", "1")
    result = CliRunner().invoke(group_raising(ZeroDivisionError("x")), ["go"])
    assert isinstance(result.exception, ZeroDivisionError)


@pytest.fixture
def sigint_restored():
    """run_cli ends a process: on Ctrl-C it ignores SIGINT on its way out (a second Ctrl-C
    must not turn exit 130 into death by signal). Called in this test process, that would leave
    the worker ignoring SIGINT, and every process it starts after (a demo a later test
    interrupts) with it; so the handler is put back."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_run_cli_ends_with_the_code_and_one_line(capsys, sigint_restored) -> None:
    for exc, code, line in (
        (KeyboardInterrupt(), 130, "prog: interrupted"),
        (UsageFault("--x 3: valid 1..2"), 2, "prog: error: --x 3: valid 1..2"),
        (BrokenPipeError(32, "Broken pipe"), 1, "prog: failed: [Errno 32] Broken pipe"),
    ):
        with pytest.raises(SystemExit) as ended:
            run_cli(group_raising(exc), ["go"])
        assert ended.value.code == code
        assert capsys.readouterr().err.strip().splitlines()[-1] == line
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the second Ctrl-C is ignored


def test_click_usage_errors_are_one_line_too(capsys) -> None:
    with pytest.raises(SystemExit) as ended:
        run_cli(group_raising(ValueError()), ["go", "--nope"])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: error: No such option")
    assert "--nope" in err and err.endswith(" (see prog go --help)\n")


def test_serve_refuses_a_bad_listen_address_before_loading_anything(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "serve", "--bundle", str(tmp_path), "--listen", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr == (
        "hostctl: error: --listen 'x': expected tcp://HOST:PORT (PORT 0 picks a free one)\n"
    )


def test_a_one_class_training_set_trains_with_one_warning(exported, tmp_path) -> None:
    """Every train sample of one class trained without a word: the exits learn to answer only
    that class. Now one warning line naming the class; the run goes on (a smoke test may mean
    it)."""
    data = tmp_path / "one.npz"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    np.savez(data, x=x, y=np.full(40, 3))
    bundle = exported("smallcnn", 2, baselines=True)  # --mode edge: no host to start
    out = subprocess.run(
        [
            *(sys.executable, "-m", "edge_runtime.cli", "run"),
            *("--bundle", str(bundle / "edge"), "--mode", "edge", "--epochs", "1"),
            *("--data", f"npz:{data}", "--report", str(tmp_path / "r.json")),
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    warned = [line for line in out.stderr.splitlines() if "one class" in line]
    assert len(warned) == 1 and "WARNING" in warned[0], out.stderr[-2000:]
    assert "every train sample is of one class, '3' (label 3)" in warned[0], warned
    assert (tmp_path / "r.json").is_file()


def test_edge_data_errors_are_usage_errors(exported, tmp_path) -> None:
    bundle = exported("smallcnn", 2)
    out = subprocess.run(
        [
            *(sys.executable, "-m", "edge_runtime.cli", "run"),
            *("--bundle", str(bundle / "edge"), "--mode", "edge"),
            *("--data", f"npz:{tmp_path / 'absent.npz'}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-runtime: error: ")
    assert "absent.npz" in lines[0]


def test_a_program_run_alone_shows_its_help(capsys) -> None:
    from host.cli import cli

    with pytest.raises(SystemExit) as ended:
        run_cli(cli, [])
    assert ended.value.code == 2  # as click's own standalone mode does
    err = capsys.readouterr().err
    assert err.startswith("Usage: hostctl [OPTIONS] COMMAND") and "  export " in err
