"""`hostctl hil --board FILE [--out DIR]`: the hardware-in-the-loop suite on one board.

The same thing as `pytest hw_tests --board FILE --out DIR`; hostctl checks the board file first
(a BoardError, a usage error: exit 2 with one line) and then exits with pytest's code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from edge_runtime.errors import UsageFault
from host.cli_options import board_option
from host.deploy.board import load_board

HW_TESTS = Path(__file__).resolve().parents[2] / "hw_tests"


@click.command()
@board_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="where hil-report.json and hil-report.md go",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def hil(board_file: Path, out: Path, pytest_args: tuple[str, ...]) -> None:
    """Check, deploy to and train on a board; write hil-report.json and hil-report.md.

    Extra arguments after `--` go to pytest, e.g. `hostctl hil --board B -- -k engine`.
    """
    board = load_board(board_file)
    if not (HW_TESTS / "conftest.py").is_file():
        raise UsageFault(
            f"the HIL suite is not at {HW_TESTS}: run hostctl hil from a source checkout"
        )
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(HW_TESTS),
        "--board",
        str(board_file.resolve()),
        "--out",
        str(out.resolve()),
        *pytest_args,
    ]
    click.echo(f"hil: {board.name} ({board.arch}, engine {board.resolved_engine}) -> {out}")
    click.get_current_context().exit(subprocess.call(argv))


COMMANDS = [hil]
