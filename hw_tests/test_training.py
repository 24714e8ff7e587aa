"""A short hierarchical run: the edge on the board, the cloud trainer here, over the board's link.

Measures the edge's step time (median of edge_metrics.csv step_s), link throughput (bytes up
over the time the link was busy sending), epoch time and host/edge overlap (runtime over the
busiest stage's busy time: 1.0 means edge, link and cloud fully overlapped).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from host.deploy.access import BoardAccess
from host.deploy.board import Board
from host.hil.report import HilReport
from host.hil.run import HilRunOptions, link_capability, train_on_board


@pytest.mark.timeout(2400)
def test_hierarchical_run(
    board: Board,
    board_access: BoardAccess,
    deployed,
    exported_bundle: Path,
    hil_report: HilReport,
    tmp_path: Path,
) -> None:
    why = link_capability(board)
    if why is not None:
        pytest.skip(why)
    opts = HilRunOptions()
    report = train_on_board(
        board, board_access, deployed.work, exported_bundle, tmp_path / "run", opts
    )
    figures = report["hil_figures"]
    hil_report.record(
        **figures,
        runtime_s=report["runtime_s"],
        wall_s=report["wall_s"],
        epochs=report["epochs"],
        data=opts.data,
        codec=report["codec"],
        link=report["link"],
        bytes_up=report["bytes_up"],
        bytes_down=report["bytes_down"],
        batches_sent=report["batches_sent"],
        batches_trained_cloud=report["batches_trained_cloud"],
        edge_busy_s=report["edge_busy_s"],
        link_busy_s=report["link_busy_s"],
        cloud_busy_s=report["cloud_busy_s"],
        edge_exit_accuracy=report["edge_exit_accuracy"],
        final_accuracy=report["final_accuracy"],
        engine_used=report["engine"],
    )
    assert report["engine"] == board.resolved_engine
    assert report["batches_sent"] > 0
    assert report["batches_trained_cloud"] == report["batches_sent"]
    assert figures["edge_step_s_median"] and figures["edge_step_s_median"] > 0
    assert figures["pipeline_efficiency"] > 0
