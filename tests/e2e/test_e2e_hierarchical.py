"""Hierarchical training end to end: real processes over TCP loopback and a pty pair."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from e2e_harness import (
    ENV,
    edge_cmd,
    expected_ids,
    free_port,
    run_edge,
    spawn_edge,
    start_cloud,
    wait_until,
)

from host.linkemu.null_modem import NullModem

# The default synthetic set: 2400 train / 600 test; batch 32 -> 75 batches per epoch. Split 3 of
# smallcnn at lr 3e-3 measured 36% / 71% / 80% exit accuracy after epochs 1 / 2 / 3.
RUN = ["--data", "synthetic", "--epochs", "3", "--batch-size", "32"]
TRAIN, BATCH, EPOCHS = 2400, 32, 3


def _check_run(edge: dict, cloud: dict) -> None:
    ids = expected_ids(TRAIN, BATCH, EPOCHS)
    (record,) = cloud["edges"]
    assert record["trained_ids"] == ids  # every batch, once, in order
    assert record["duplicates_dropped"] == 0
    assert edge["batches_sent"] == len(ids) == cloud["batches_trained_cloud"]
    # Both exits learn: well above the 10% of chance on 10 classes.
    assert edge["edge_exit_accuracy"] > 0.35, edge
    assert cloud["final_accuracy"] > 0.35, cloud
    assert edge["final_accuracy"] == cloud["final_accuracy"]  # METRICS came back to the edge
    fractions = [row["fraction_at_edge"] for row in edge["early_exit"]]
    assert fractions == sorted(fractions, reverse=True) and 0 < fractions[0] <= 1
    # Both ends count the same wire bytes, up to the last control frames (BYE, keepalive).
    assert cloud["bytes_up"] > 0
    assert abs(edge["bytes_up"] - cloud["bytes_up"]) <= 0.001 * edge["bytes_up"]


def test_end_to_end_over_tcp(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path)
    edge = run_edge(small_bundle, cloud.url, tmp_path, *RUN)
    _check_run(edge, cloud.finish())


def test_end_to_end_over_a_pty_pair(small_bundle, tmp_path) -> None:
    with NullModem() as modem:
        cloud = start_cloud(small_bundle, tmp_path, serial=modem.paths[1])
        edge = run_edge(small_bundle, modem.paths[0], tmp_path, *RUN, "--baud", "3000000")
        _check_run(edge, cloud.finish())


@pytest.mark.parametrize("engine", ["torch"])
def test_torch_engine_completes_a_run(small_bundle, tmp_path, engine) -> None:
    cloud = start_cloud(small_bundle, tmp_path)
    args = ["--data", "synthetic:400", "--epochs", "1", "--engine", engine]
    edge = run_edge(small_bundle, cloud.url, tmp_path, *args)
    report = cloud.finish()
    assert edge["engine"] == engine
    assert report["edges"][0]["trained_ids"] == expected_ids(320, 32, 1)


def test_cloud_and_edge_killed_and_restarted(small_bundle, tmp_path) -> None:
    """SIGKILL the cloud mid-epoch and restart it; SIGKILL the edge and --resume it."""
    listen = f"tcp://127.0.0.1:{free_port()}"
    cloud = start_cloud(small_bundle, tmp_path, "--checkpoint-every", "10", listen=listen)
    edge = spawn_edge(small_bundle, cloud.url, tmp_path, *RUN)
    wait_until(lambda: cloud.rows() >= 35, 120, "the cloud to train 35 batches")
    cloud.proc.send_signal(signal.SIGKILL)
    cloud.proc.wait(10)
    cloud = start_cloud(
        small_bundle, tmp_path, "--checkpoint-every", "10", listen=listen, tag="cloud2"
    )
    # Let the edge reconnect and move on into epoch 1, then kill it too.
    wait_until(lambda: cloud.rows() >= 100, 120, "the restarted cloud to reach epoch 1")
    edge.send_signal(signal.SIGKILL)
    edge.wait(10)
    resumed = run_edge(small_bundle, cloud.url, tmp_path, *RUN, "--resume", tag="edge2")
    report = cloud.finish()
    (record,) = report["edges"]
    # Exactly once: the tail's lineage holds every batch id once, in order, despite both kills.
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)
    assert resumed["epochs_done"] == EPOCHS and not resumed["stopped_early"]
    assert record["final_accuracy"] is not None


def test_edge_killed_on_a_serial_line_and_resumed_trains_each_batch_once(
    small_bundle, tmp_path
) -> None:
    """SIGKILL the edge mid-run on a paced serial line, whose bytes in flight (frames of the
    killed session) still reach the host, and --resume it on the same line: every batch is
    trained exactly once, none of the dead session's frames taken into the new one."""
    run = ["--data", "synthetic:1500", "--epochs", "1", "--codec", "int8", "--baud", "1000000"]
    with NullModem(baud=1_000_000) as modem:
        cloud = start_cloud(
            small_bundle, tmp_path, "--checkpoint-every", "5", serial=modem.paths[1]
        )
        edge = spawn_edge(small_bundle, modem.paths[0], tmp_path, *run)
        wait_until(lambda: cloud.rows() >= 12, 180, "the cloud to train 12 batches")
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        resumed = run_edge(small_bundle, modem.paths[0], tmp_path, *run, "--resume", tag="edge2")
        report = cloud.finish()
    (record,) = report["edges"]
    assert record["trained_ids"] == expected_ids(1200, 32, 1)
    assert resumed["epochs_done"] == 1 and not resumed["stopped_early"]


def test_clean_stop_and_resume(small_bundle, tmp_path) -> None:
    """SIGTERM stops both sides cleanly (exit 0, checkpoint, report); both resume."""
    listen = f"tcp://127.0.0.1:{free_port()}"
    cloud = start_cloud(small_bundle, tmp_path, listen=listen)
    edge = spawn_edge(small_bundle, cloud.url, tmp_path, *RUN)
    wait_until(lambda: cloud.rows() >= 30, 120, "30 trained batches")
    edge.send_signal(signal.SIGTERM)
    assert edge.wait(60) == 0, edge.stderr.read()
    first = json.loads((tmp_path / "edge.json").read_text())
    assert first["stopped_early"]
    cloud.proc.send_signal(signal.SIGTERM)
    stopped = cloud.finish(60)  # exit 0 with its report
    # What the edge handed to the link but the host had not taken stays in the edge's spool.
    assert 0 < stopped["batches_trained_cloud"] <= first["batches_sent"]
    assert not stopped["edges"][0]["done"]
    cloud = start_cloud(small_bundle, tmp_path, listen=listen, tag="cloud2")
    run_edge(small_bundle, cloud.url, tmp_path, *RUN, "--resume", tag="edge2")
    (record,) = cloud.finish()["edges"]
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)


def test_two_edges_train_at_once_each_with_its_own_tail(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path)
    args = ["--data", "synthetic:800", "--epochs", "1"]
    edges = []
    for name in ("board0", "board1"):
        work = tmp_path / name
        work.mkdir()
        cmd = edge_cmd(small_bundle, cloud.url, work, *args)
        cmd[cmd.index("--edge-id") + 1] = name
        edges.append(
            subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=work
            )
        )
    for proc in edges:
        assert proc.wait(240) == 0, proc.stderr.read()[-2000:]
    report = cloud.finish()
    by_edge = {e["edge_id"]: e for e in report["edges"]}
    assert set(by_edge) == {"board0", "board1"}
    for record in by_edge.values():
        assert record["trained_ids"] == expected_ids(640, 32, 1)
        assert record["done"] and record["duplicates_dropped"] == 0
    assert report["batches_trained_cloud"] == 2 * 20


def test_the_edge_takes_the_whole_bundle_dir_too(small_bundle, tmp_path) -> None:
    """`--bundle DIR` (as serve takes it) trains DIR/edge; it was a usage error."""
    cloud = start_cloud(small_bundle, tmp_path)
    cmd = edge_cmd(small_bundle, cloud.url, tmp_path, "--data", "synthetic:200", "--epochs", "1")
    cmd[cmd.index("--bundle") + 1] = str(small_bundle)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=ENV, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (record,) = cloud.finish()["edges"]
    assert record["trained_ids"] == expected_ids(160, 32, 1)
