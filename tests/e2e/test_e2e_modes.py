"""Every mode completes a short run and its byte counts have the shape the mode implies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SAMPLES = 600  # synthetic:600 -> 480 train / 120 test
RAW_BYTES = SAMPLES * 3 * 32 * 32


@pytest.fixture(scope="module")
def baseline_bundle(exported):
    return exported("smallcnn", 3, lr=3e-3, baselines=True)


def run_mode(mode: str, bundle, tmp_path, *extra: str) -> dict:
    report = tmp_path / f"{mode}.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "host.cli",
            "demo",
            "--mode",
            mode,
            "--data",
            f"synthetic:{SAMPLES}",
            "--epochs",
            "1",
            "--link",
            "local",
            "--codec",
            "fp32",
            "--work-dir",
            str(tmp_path / mode),
            "--report",
            str(report),
            "--bundle",
            str(bundle),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(report.read_text())


def test_modes_move_the_bytes_they_should(baseline_bundle, tmp_path) -> None:
    r = {
        m: run_mode(m, baseline_bundle, tmp_path)
        for m in ("hierarchical", "split", "cloud", "edge")
    }
    # hierarchical: activations up, only acks and metrics down; no trained front at the end,
    # as no --model-out asked for one (tests/modes/test_modes_inprocess.py: the host asks).
    assert r["hierarchical"]["model_bytes_up"] == r["split"]["model_bytes_up"] == 0
    act = r["hierarchical"]["bytes_up"]
    assert r["hierarchical"]["bytes_down"] < 0.02 * act
    assert r["hierarchical"]["batches_trained_cloud"] == 15
    # split learning: the same activations up, and gradients of the same size down.
    assert abs(r["split"]["bytes_up"] - act) < 0.02 * act
    # (up also carries the 120 test samples' activations; gradients come for the 480 train ones)
    assert 0.75 < r["split"]["bytes_down"] / r["split"]["bytes_up"] < 0.85
    # cloud-only: the raw set (train and test, uint8) goes up once, nothing big comes down.
    assert RAW_BYTES <= r["cloud"]["bytes_up"] < 1.05 * RAW_BYTES
    assert r["cloud"]["bytes_down"] < 0.01 * RAW_BYTES
    # edge-only: no link at all.
    assert r["edge"]["bytes_up"] == r["edge"]["bytes_down"] == 0
    for mode, report in r.items():
        assert report["mode"] == mode and report["final_accuracy"] is not None, mode
        # Only hierarchical training has an exit that it trains and scores.
        assert (report["edge_exit_accuracy"] is not None) == (mode == "hierarchical"), mode
        # The training phase ends before the run does: the final evaluation comes after it.
        assert 0 < report["train_s"] < report["runtime_s"], (mode, report["train_s"])


def test_split_learning_with_torch_scores_no_exit(baseline_bundle, tmp_path) -> None:
    """The torch front carries the bundle's exit head, which split learning never trains."""
    r = run_mode("split", baseline_bundle, tmp_path, "--engine", "torch")
    assert r["engine"] == "torch" and r["batches_trained_cloud"] == 15
    assert r["edge_exit_accuracy"] is None
    assert r["early_exit_at_0.9"] is None  # no exit confidences, no early-exit table


def test_training_phase_needs_both_sides_times() -> None:
    from host.session.runner import training_s

    edge = {"started_at": 100.0, "train_done_at": 130.0}
    assert training_s(edge, {"last_trained_at": 142.5}) == 42.5  # the host trained last
    assert training_s(edge, {"last_trained_at": 120.0}) == 30.0  # split learning: edge last
    assert training_s(edge, None) == 30.0  # edge-only
    assert training_s({"started_at": 100.0}, {"last_trained_at": None}) is None
    assert training_s({"train_done_at": 130.0}, None) is None  # an older edge's report
