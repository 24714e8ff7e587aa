"""`hostctl doctor [--board FILE]`: the host's packages and versions, the link emulation this
machine can do, and with a board file, whether the board's deploy connection is there.

The board's own checks (its engines, its serial ports, the handshake from there) are
`edge-runtime doctor` on the board. Imports nothing heavy: versions come from package metadata.
"""

from __future__ import annotations

import importlib.metadata
import socket
from pathlib import Path

import click

from edge_runtime.doctor import Check
from edge_runtime.errors import HiertrainError

# What the host side uses, by distribution name.
HOST_PACKAGES = (
    ("torch", True),
    ("onnx", True),
    ("onnxruntime-training", True),
    ("matplotlib", False),
    ("tensorboard", False),
    ("zstandard", False),
)


def package_checks() -> list[Check]:
    """Each host package: installed, and its version."""
    found = []
    for dist, required in HOST_PACKAGES:
        try:
            found.append(Check(dist, True, importlib.metadata.version(dist), required))
        except importlib.metadata.PackageNotFoundError:
            found.append(Check(dist, False, "not installed: pip install hiertrain[host]", required))
    return found


def emulation_check() -> Check:
    """Whether this machine shapes links in the kernel (else the user-space relay)."""
    from host.linkemu import kernel_shaping_available

    ok, why = kernel_shaping_available()
    detail = "kernel shaping (tc, network namespaces)" if ok else f"user-space relay ({why})"
    return Check("link emulation", ok, detail, required=False)


def board_check(board_file: Path) -> Check:
    """The board's deploy connection: a serial device present, an SSH port that answers."""
    from host.deploy.board import load_board

    board = load_board(board_file)
    conn = board.connection
    if conn.kind == "serial":
        ok = conn.device is not None and Path(conn.device).exists()
        return Check(
            f"board {board.name}", ok, f"{conn.describe()}: {'present' if ok else 'absent'}"
        )
    if conn.kind == "ssh":
        try:
            with socket.create_connection((conn.host, conn.port), timeout=conn.connect_timeout_s):
                pass
        except OSError as exc:
            return Check(f"board {board.name}", False, f"{conn.describe()}: {exc}")
        return Check(f"board {board.name}", True, f"{conn.describe()}: the SSH port answers")
    return Check(f"board {board.name}", True, conn.describe())


@click.command("doctor")
@click.option("--board", "board_file", type=click.Path(exists=True, path_type=Path), default=None)
def doctor(board_file: Path | None) -> None:
    """What this host has (packages, link emulation) and whether it reaches --board."""
    found = [*package_checks(), emulation_check()]
    if board_file is not None:
        found.append(board_check(board_file))
    for c in found:
        mark = "ok " if c.ok else ("-- " if not c.required else "FAIL")
        click.echo(f"{mark:4} {c.name}: {c.detail}")
    failed = [c.name for c in found if c.required and not c.ok]
    if failed:
        raise HiertrainError(f"doctor: {', '.join(failed)} failed")
    if board_file is not None:
        click.echo("on the board: edge-runtime doctor --bundle DIR/edge --connect URL")


COMMANDS = [doctor]
