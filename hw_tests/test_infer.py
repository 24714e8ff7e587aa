"""Hierarchical inference on the board: the trained model copied there answers held-out samples
at its exit with the board's onnxruntime and offloads the rest to this host's tail."""

from __future__ import annotations

import pytest

from host.deploy.access import BoardAccess
from host.deploy.board import Board
from host.hil.report import HilReport
from host.hil.run import infer_on_board


@pytest.mark.timeout(2400)
def test_early_exit_inference_on_board(
    board: Board, board_access: BoardAccess, deployed, trained_run, hil_report: HilReport, tmp_path
) -> None:
    opts = trained_run.options
    result = infer_on_board(
        board, board_access, deployed.work, trained_run.model_dir, tmp_path, opts
    )
    answers, host = result["answers"], result["host"]
    lat = result["latency_ms"]
    hil_report.record(
        infer_samples=result["samples"],
        infer_fraction_at_edge=result["fraction_at_edge"],
        infer_accuracy=result["accuracy"],
        infer_latency_ms_p50=lat["p50"],
        infer_latency_ms_p95=lat["p95"],
        infer_bytes_up=result["bytes_up"],
        infer_threshold=result["policy"]["threshold"],
    )
    # The held-out split less the calibration half, at most --limit.
    assert 0 < result["samples"] <= opts.infer_samples
    assert len(result["calibration"]["answered_indices"]) == result["samples"]
    assert sum(answers.values()) == result["samples"]
    assert answers.get("degraded", 0) == 0, "the host was lost during inference"
    # The host's tail answered every offload, and each validation sample of the board's
    # calibration pass before them.
    calibrated = result["calibration"]["validation_samples"]
    assert host["answered"] == answers.get("cloud", 0) + calibrated
    if answers.get("cloud", 0):
        assert result["bytes_up"] > 0 and host["bytes_up"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0
    # Calibrated on the board to offload at most half: the exit answers some, the tail others
    # (2 sigma of slack on the answered samples, as docs/model_out.md's tests allow).
    assert result["calibration"]["threshold"] == result["policy"]["threshold"]
    offloaded = answers.get("cloud", 0) / result["samples"]
    sigma = (opts.infer_max_offload * (1 - opts.infer_max_offload) / result["samples"]) ** 0.5
    assert offloaded <= opts.infer_max_offload + 2 * sigma
    assert answers.get("edge", 0) > 0
    assert 0 < lat["p50"] <= lat["p95"]
