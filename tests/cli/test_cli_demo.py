"""`hostctl demo` end to end (a shorter run than `make demo`, same code path)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_runs_and_reports(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "host.cli",
            "demo",
            "--data",
            "synthetic:800",
            "--epochs",
            "1",
            "--link",
            "4g",
            "--work-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    for key in (
        "mode",
        "model",
        "split",
        "link",
        "epochs",
        "runtime_s",
        "bytes_up",
        "bytes_down",
        "batches_sent",
        "batches_trained_cloud",
        "edge_exit_accuracy",
        "final_accuracy",
        "edge_busy_s",
        "link_busy_s",
        "cloud_busy_s",
    ):
        assert key in report, key
    assert report["batches_sent"] == report["batches_trained_cloud"] == 20  # 640 / 32
    assert report["link"].startswith("4g")
    assert report["bytes_down"] < report["bytes_up"] / 20  # acks and metrics only come down
    assert "final accuracy" in out.stdout and "pipeline efficiency" in out.stdout


def test_demo_rejects_a_bad_link() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--link", "5g"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "3g" in out.stderr and len(out.stderr.strip().splitlines()) == 1
