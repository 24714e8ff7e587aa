"""The one logger setup: a terminal gets rich lines without progress records (its bars show
them); a log file gets every line, progress included, with its time."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROGRAM = r"""
import logging, sys
from pathlib import Path
from edge_runtime.command_line import PROGRESS, configure_logging
configure_logging(log_file=Path(sys.argv[1]))
logging.getLogger("hiertrain.x").info("an event line")
logging.getLogger("hiertrain.x").info("a progress line", extra={PROGRESS: True})
logging.getLogger("hiertrain.x").debug("a debug line")
"""


def test_terminal_drops_progress_records_and_the_file_keeps_them(tmp_path) -> None:
    leader, follower = pty.openpty()  # stderr is a real terminal
    log = tmp_path / "run.log"
    try:
        out = subprocess.run(
            [sys.executable, "-c", PROGRAM, str(log)],
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=REPO,
            timeout=60,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert out.returncode == 0
    assert out.stdout == b""  # log lines never go to stdout (results do)
    screen = b"".join(chunks).decode()
    assert "an event line" in screen and "INFO" in screen
    assert "a progress line" not in screen and "a debug line" not in screen
    lines = log.read_text().splitlines()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO hiertrain\.x: "
    assert [re.sub(stamp, "", line) for line in lines] == ["an event line", "a progress line"]


def test_other_libraries_info_lines_stay_out() -> None:
    """Our loggers log at the chosen level; other libraries' INFO does not reach the user.
    The root logger was at INFO, so an interrupted demo ended with torch's "FakeTensor cache
    stats" lines after its one "interrupted" line (torch logs them at exit)."""
    program = (
        "import logging\n"
        "from edge_runtime.command_line import configure_logging\n"
        "for verbosity in (0, -1, 1):\n"
        "    configure_logging(verbosity=verbosity)\n"
        "    print(*(logging.getLogger(n).getEffectiveLevel() for n in ('hiertrain.edge', 'torch')))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["20 30", "30 30", "10 10"]
