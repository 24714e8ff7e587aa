"""Ctrl-C on the edge: exit 130 with how to resume; the resumed run trains every batch once."""

from __future__ import annotations

import json
import signal
import subprocess

from e2e_harness import ENV, edge_cmd, expected_ids, free_port, run_edge, start_cloud, wait_until

RUN = ["--data", "synthetic", "--epochs", "2", "--batch-size", "32"]
TRAIN, BATCH, EPOCHS = 2400, 32, 2


def test_ctrl_c_on_the_edge_exits_130_and_says_how_to_resume(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path, listen=f"tcp://127.0.0.1:{free_port()}")
    edge = subprocess.Popen(
        edge_cmd(small_bundle, cloud.url, tmp_path, *RUN),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    wait_until(lambda: cloud.rows() >= 20, 120, "20 trained batches")
    edge.send_signal(signal.SIGINT)
    _, err = edge.communicate(timeout=60)
    assert edge.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("edge-runtime: interrupted: stopped at epoch "), last
    assert last.endswith(f"continue with --resume --work-dir {tmp_path / 'edge-work'}"), last
    assert "Traceback" not in err
    assert json.loads((tmp_path / "edge.json").read_text())["stopped_early"]  # report kept
    run_edge(small_bundle, cloud.url, tmp_path, *RUN, "--resume", tag="edge2")
    (record,) = cloud.finish()["edges"]
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)
