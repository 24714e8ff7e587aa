"""A short hierarchical run: the edge on the board, the cloud trainer here, over the board's link.

Measures the edge's step time (median of edge_metrics.csv step_s), link throughput (bytes up
over the time the link was busy sending), epoch time and host/edge overlap (runtime over the
busiest stage's busy time: 1.0 means edge, link and cloud fully overlapped). The run ends with
the model out on both sides: the host's whole model, and the board's own export of its half.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from host.deploy.board import Board
from host.hil.report import HilReport
from host.model.collect import held_out_samples


@pytest.mark.timeout(2400)
def test_hierarchical_run(board: Board, trained_run, hil_report: HilReport) -> None:
    report, opts = trained_run.report, trained_run.options
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


@pytest.mark.timeout(2400)
def test_model_out_on_board(board: Board, trained_run, hil_report: HilReport) -> None:
    """The board's own edge.onnx (its engine's export, on its architecture) and the host's
    edge.onnx (assembled from the weights the board uploaded) give the same answers here."""
    import onnxruntime as ort

    host_dir, board_dir = trained_run.model_dir, trained_run.board_model_dir
    host_json = json.loads((host_dir / "model.json").read_text())
    board_json = json.loads((board_dir / "edge.json").read_text())
    assert board_json["engine"] == board.resolved_engine
    assert board_json["normalisation"] == host_json["normalisation"]
    assert board_json["classes"] == host_json["classes"]
    x = held_out_samples(trained_run.options.data, count=32).astype(np.float32)
    outputs = {}
    for name, folder, io in (
        ("host", host_dir, host_json["io"]["edge.onnx"]),
        ("board", board_dir, board_json["io"]["edge.onnx"]),
    ):
        session = ort.InferenceSession(
            str(folder / "edge.onnx"), providers=["CPUExecutionProvider"]
        )
        outputs[name] = dict(
            zip(io["outputs"], session.run(io["outputs"], {io["inputs"][0]: x}), strict=True)
        )
    host_exit, board_exit = outputs["host"]["exit_logits"], outputs["board"]["logits"]
    host_act, board_act = outputs["host"]["activation"], outputs["board"]["activation"]
    diff = max(
        float(np.abs(host_exit - board_exit).max()), float(np.abs(host_act - board_act).max())
    )
    scale = max(float(np.abs(host_exit).max()), float(np.abs(host_act).max()), 1.0)
    hil_report.record(
        model_out_files=sorted(p.name for p in host_dir.iterdir() if p.is_file()),
        board_edge_onnx_bytes=(board_dir / "edge.onnx").stat().st_size,
        board_vs_host_edge_max_diff=diff,
    )
    assert {"edge.onnx", "tail.onnx", "full.onnx", "model.pt", "model.json"} <= {
        p.name for p in host_dir.iterdir()
    }
    assert diff <= 1e-4 * scale, f"board and host edge.onnx differ by {diff:.3g}"
