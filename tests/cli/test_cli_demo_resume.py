"""Ctrl-C on `hostctl demo`: a partial report, exit 130, and `--resume` finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TRAIN_BATCHES = 2 * 40  # synthetic:1600 trains on 1280 samples: 40 batches of 32, 2 epochs


def _demo(work: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "host.cli",
        "demo",
        "--data",
        "synthetic:1600",
        "--epochs",
        "2",
        "--link",
        # Slow enough that the run outlasts the wait for 10 trained batches on a quiet machine
        # (on 4g the whole demo once ended before the interrupt reached it).
        "1mbit/50ms",
        "--link-emulation",
        "user",
        "--work-dir",
        str(work),
        *extra,
    ]


def _rows(csv: Path) -> int:
    return max(0, len(csv.read_text().splitlines()) - 1) if csv.exists() else 0


def test_interrupted_demo_reports_and_resumes(tmp_path) -> None:
    work = tmp_path / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "demo.err", "w") as err:
        proc = subprocess.Popen(
            _demo(work), stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path, env=env
        )
        deadline = time.monotonic() + 240  # a guard: export and training on a loaded machine
        # Interrupt once the edge has trained its first epoch (its log line), with the second
        # still ahead: the cloud's metrics file alone was not seen growing in time in some runs.
        while (
            _rows(work / "cloud-metrics.csv") < 10
            and "epoch 0 train batch 40/40" not in (tmp_path / "demo.err").read_text()
            and proc.poll() is None
        ):
            assert time.monotonic() < deadline, "the demo trained nothing"
            time.sleep(0.05)
        assert proc.poll() is None, "the demo ended before it could be interrupted"
        # Only the demo's process gets the signal: it must stop its edge itself.
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(180)
    text = (tmp_path / "demo.err").read_text()
    assert rc == 130, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last == (
        f"hostctl: interrupted: partial report in {work / 'report.json'}; "
        f"continue with hostctl demo --resume --work-dir {work}"
    ), last
    partial = json.loads((work / "report.json").read_text())
    assert partial["interrupted"] is True
    assert 10 <= partial["batches_trained_cloud"] < TRAIN_BATCHES

    out = subprocess.run(
        _demo(work, "--resume"), capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "exporting" not in out.stderr  # the bundle of the first part is reused
    report = json.loads((work / "report.json").read_text())
    assert "interrupted" not in report
    assert report["batches_trained_cloud"] == TRAIN_BATCHES  # the whole run, both parts
    edge = json.loads((work / "edge.json").read_text())
    assert edge["parts"] == 2
    # The summary counts both parts: this part alone sent fewer batches than the run.
    assert edge["this_part"]["batches_sent"] < report["batches_sent"]
    assert report["batches_sent"] >= TRAIN_BATCHES
