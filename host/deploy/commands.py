"""`hostctl bundle` and `hostctl deploy`: get the edge onto a board, with progress.

Both raise BoardError for what the user must fix (a usage error: hostctl exits 2) and
DeployError for a step that failed (hostctl exits 1).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from edge_runtime.errors import Interrupted
from host.cli_options import board_option
from host.console import console as stderr_console
from host.deploy.access import BoardAccess, open_access
from host.deploy.agent_access import AgentAccess
from host.deploy.board import load_board
from host.deploy.errors import BoardError
from host.deploy.model import ModelDeployResult, deploy_model
from host.deploy.offline import DeployBundle, make_deploy_bundle
from host.deploy.release import DeployResult, deploy
from host.deploy.serial import deploy_serial


def default_out_dir(board_name: str) -> Path:
    """Where `hostctl bundle` writes without --out."""
    return Path("artifacts") / f"deploy-{board_name}"


def bundle_command(
    board_file: Path, bundle_dir: Path, out: Path | None, skip_deps: bool, console: Console
) -> DeployBundle:
    """Make the deploy bundle for a board file, showing pip's progress on a TTY."""
    board = load_board(board_file)
    out = out or default_out_dir(board.name)
    engine = board.resolved_engine
    if not skip_deps and engine == "torch":
        console.print(
            f"[yellow]note:[/] the torch engine's wheel for {board.arch} is large "
            "(100 MB or more); it is downloaded once and deployed only when it changes"
        )
    saved = 0
    with console.status(f"bundling for {board.name}") as status:

        def on_progress(line: str) -> None:
            nonlocal saved
            if line.startswith(("Saved ", "File was already downloaded")):
                saved += 1
            status.update(f"[{saved} wheels] {line[:100]}")
            if not console.is_terminal and line.startswith(("Saved", "File was", "building")):
                console.print(line)

        made = make_deploy_bundle(
            board, bundle_dir, out, skip_deps=skip_deps, on_progress=on_progress
        )
    size = sum((out / name).stat().st_size for name in made.files)
    deps = "without dependency wheels (--skip-deps)" if skip_deps else f"{saved} dependency wheels"
    console.print(
        f"deploy bundle {out}: release {made.release} for {board.name} ({board.arch}, Python "
        f"{board.python}, engine {engine}), {len(made.files)} files, {size / 1e6:.1f} MB, {deps}"
    )
    return made


def deploy_command(
    board_file: Path, deploy_dir: Path, systemd: bool, console: Console
) -> DeployResult:
    """Deploy a deploy bundle to the board of a board file and say what happened."""
    board = load_board(board_file)
    # A board with a shell gets the whole deploy (wheels installed, checked, switched there);
    # a board that only takes files gets the edge artifacts, and its agent checks and switches.
    with open_access(board) as access:
        if isinstance(access, BoardAccess):
            result = deploy(board, deploy_dir, systemd=systemd, access=access, console=console)
        elif systemd:
            raise BoardError(
                f"board file {board_file}: --systemd needs a shell on the board (ssh or local); "
                f"{board.connection.describe()} takes files only (the agent receives artifacts)"
            )
        else:
            assert isinstance(access, AgentAccess)
            result = deploy_serial(board, deploy_dir, console, access)
    if not result.sent and not result.installed and not result.switched:
        console.print(f"{board.name}: release {result.release} is current and up to date")
    else:
        console.print(
            f"{board.name}: release {result.release} is current ({len(result.sent)} sent, "
            f"{len(result.up_to_date)} up to date)"
        )
    return result


@click.command("bundle")
@board_option
@click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the export bundle (DIR or DIR/edge)",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="deploy bundle directory [default: artifacts/deploy-<board name>]",
)
@click.option(
    "--skip-deps",
    is_flag=True,
    help="only the edge artifacts and the hiertrain wheel; the board brings the dependencies",
)
def bundle_cmd(board_file: Path, bundle_dir: Path, out: Path | None, skip_deps: bool) -> None:
    """An offline deploy bundle for a board: edge artifacts, wheels, sha256 manifest."""
    bundle_command(board_file, bundle_dir, out, skip_deps, stderr_console)


@click.command("deploy")
@board_option
@click.option(
    "--bundle",
    "deploy_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="a deploy bundle from `hostctl bundle`",
)
@click.option(
    "--model",
    "model_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="instead: a trained model directory (--model-out of a run) for `edge-runtime infer` "
    "on the board; its model.json, edge.onnx and link.key go to WORK_DIR/models/NAME",
)
@click.option("--name", default=None, help="with --model: NAME [default: the directory's name]")
@click.option("--systemd", is_flag=True, help="also write a systemd unit for the edge runtime")
def deploy_cmd(
    board_file: Path,
    deploy_dir: Path | None,
    model_dir: Path | None,
    name: str | None,
    systemd: bool,
) -> None:
    """Copy what changed to the board, install it offline, verify, switch `current`; or, with
    --model, put a trained model there for early-exit inference."""
    if (deploy_dir is None) == (model_dir is None):
        raise BoardError("deploy takes exactly one of --bundle DIR (a release) or --model DIR")
    if model_dir is None and name is not None:
        raise BoardError("--name goes with --model")
    if model_dir is not None and systemd:
        raise BoardError("--systemd goes with --bundle (the unit runs training)")
    try:
        if model_dir is not None:
            deploy_model_command(board_file, model_dir, name, stderr_console)
        else:
            deploy_command(board_file, deploy_dir, systemd, stderr_console)
    except KeyboardInterrupt:
        # A deploy resumes by running again: files already on the board are not sent twice.
        raise Interrupted("run the same hostctl deploy again: it sends only what changed") from None


def deploy_model_command(
    board_file: Path, model_dir: Path, name: str | None, console: Console
) -> ModelDeployResult:
    """Put a trained model on the board of a board file and say how to answer with it."""
    board = load_board(board_file)
    with open_access(board) as access:
        if not isinstance(access, BoardAccess):
            raise BoardError(
                f"board file {board_file}: --model needs a shell on the board (ssh or local); "
                f"{board.connection.describe()} takes files only"
            )
        result = deploy_model(board, model_dir, name=name, access=access, console=console)
    console.print(
        f"on the board: {board.work_dir}/current/venv/bin/edge-runtime infer --model "
        f"{result.remote_dir} --connect socket://HOST:PORT --data SPEC  (the host: hostctl "
        f"serve --infer --model {model_dir} --listen tcp://0.0.0.0:PORT)"
    )
    return result


COMMANDS = [bundle_cmd, deploy_cmd]
