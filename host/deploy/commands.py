"""What `hostctl bundle` and `hostctl deploy` do, with progress, for host/cli.py to call.

Both raise BoardError for what the user must fix (hostctl exits 2) and DeployError for a step
that failed (hostctl exits 1).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from host.deploy.board import load_board
from host.deploy.errors import BoardError
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
    if board.connection.kind == "serial":
        if systemd:
            raise BoardError(
                f"board file {board_file}: --systemd needs a shell on the board (ssh or local); "
                "over serial the agent receives artifacts only"
            )
        result = deploy_serial(board, deploy_dir, console)
    else:
        result = deploy(board, deploy_dir, systemd=systemd, console=console)
    if not result.sent and not result.installed and not result.switched:
        console.print(f"{board.name}: release {result.release} is current and up to date")
    else:
        console.print(
            f"{board.name}: release {result.release} is current ({len(result.sent)} sent, "
            f"{len(result.up_to_date)} up to date)"
        )
    return result
