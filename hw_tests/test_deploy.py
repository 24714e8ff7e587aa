"""Deploy: the smallcnn bundle becomes the board's current release, and runs there."""

from __future__ import annotations

import pytest

from host.deploy.access import BoardAccess
from host.deploy.board import Board
from host.hil.report import HilReport


@pytest.mark.timeout(1800)
def test_deploy(board: Board, board_access: BoardAccess, deployed, hil_report: HilReport) -> None:
    hil_report.record(
        deploy_s=deployed.deploy_s,
        deploy_files_sent=deployed.sent,
        deploy_skip_deps=deployed.skip_deps,
        release=deployed.release,
    )
    current = board_access.run(["readlink", f"{deployed.work}/current"]).stdout.strip()
    assert current.endswith(deployed.release)
    board_access.run([f"{deployed.work}/current/venv/bin/edge-runtime", "--help"], timeout=300)
