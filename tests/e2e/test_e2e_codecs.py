"""A hierarchical run with each entropy-coded codec: the edge codes, the host decodes, it trains."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def demo(bundle, tmp_path, codec: str) -> dict:
    report = tmp_path / f"{codec}.json"
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--data", "synthetic:600", "--epochs", "1",
         "--link", "local", "--codec", codec, "--work-dir", str(tmp_path / codec),
         "--report", str(report), "--bundle", str(bundle)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(report.read_text())


def test_coded_codecs_train_and_send_fewer_bytes(exported, tmp_path) -> None:
    bundle = exported("smallcnn", 2, lr=3e-3)
    r = {c: demo(bundle, tmp_path, c) for c in ("fp32", "fp32+z", "int8", "int8+z")}
    for codec, report in r.items():
        assert report["codec"] == codec
        assert report["batches_trained_cloud"] == 15, codec  # 480 train samples, batch 32
        assert report["final_accuracy"] is not None
    # Post-ReLU activations at smallcnn's split 2: coded well under their base codec.
    assert r["fp32+z"]["bytes_up"] < 0.85 * r["fp32"]["bytes_up"]
    assert r["int8+z"]["bytes_up"] < r["int8"]["bytes_up"]
