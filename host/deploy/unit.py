"""The systemd unit that runs `edge-runtime run` from the board's current release."""

from __future__ import annotations

import re

from edge_runtime.cli import run_argv
from host.deploy.board import Board, BoardError


def _unit_arg(arg: str) -> str:
    """Quote one ExecStart argument for systemd: `%` and `$` are specifiers there."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_./:=@+,-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def edge_command(board: Board, work_dir: str, engine: str) -> list[str]:
    """The `edge-runtime run` argv the unit starts, through `<work_dir>/current`."""
    connect = board.link.connect
    if connect is None:
        raise BoardError(
            f"board file {board.path}: [link] url or serial is missing; the systemd unit needs "
            'to know where the host listens, e.g. url = "socket://192.168.1.10:5555"'
        )
    current = f"{work_dir}/current"
    argv = run_argv(
        [f"{current}/venv/bin/edge-runtime"],
        bundle_dir=f"{current}/edge",
        url=connect,
        engine=engine,
        data_spec=board.service.data,
        epochs=board.service.epochs,
        edge_id=board.name,
        work_dir=f"{work_dir}/runs/{board.name}",
    )
    if board.link.serial and not board.link.url:
        argv += ["--baud", str(board.link.baud)]
    return [*argv, *board.service.args]


def render_unit(board: Board, work_dir: str, engine: str, user: str | None = None) -> str:
    """The unit file's text: restarts on failure, waits for the network, runs as `user`."""
    exec_start = " ".join(_unit_arg(a) for a in edge_command(board, work_dir, engine))
    lines = [
        "# Written by `hostctl deploy --systemd`; deploy again to change it.",
        "[Unit]",
        f"Description=hiertrain edge runtime on {board.name}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={work_dir}",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=10",
        # edge-runtime stops cleanly on SIGTERM (checkpoint, spool); give it time to.
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
    ]
    if user:
        lines.append(f"User={user}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)
