"""Crash consistency: a killed edge resumes exactly once, even before its first checkpoint; a host
that lost its state is named, not waited on."""

from __future__ import annotations

import shutil
import signal
import subprocess

from e2e_harness import ENV, edge_cmd, expected_ids, run_edge, spawn_edge, start_cloud, wait_until

# 1920 training samples: 60 batches of 32 in the one epoch; the first checkpoint is its end.
RUN = ["--data", "synthetic:2400", "--epochs", "1", "--batch-size", "32"]
TRAIN, BATCH, EPOCHS = 1920, 32, 1


def test_sigkill_before_the_first_checkpoint_resumes_exactly_once(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path)
    edge = spawn_edge(
        small_bundle, cloud.url, tmp_path, *RUN, "--slowdown", "5", stderr=subprocess.DEVNULL
    )
    wait_until(lambda: cloud.rows() >= 5, 180, "the host to train 5 batches")
    edge.send_signal(signal.SIGKILL)
    edge.wait(30)
    assert not (tmp_path / "edge-work" / "engine.ckpt").exists()  # killed before any checkpoint
    resumed = run_edge(small_bundle, cloud.url, tmp_path, *RUN, "--resume")
    record = cloud.finish()["edges"][0]
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)  # each batch exactly once
    assert record["done"] and resumed["final_accuracy"] is not None


def test_a_host_that_lost_its_state_is_named_at_once(small_bundle, tmp_path) -> None:
    first = start_cloud(small_bundle, tmp_path, "--checkpoint-every", "5")
    edge = spawn_edge(
        small_bundle, first.url, tmp_path, *RUN, "--slowdown", "5", stderr=subprocess.DEVNULL
    )
    wait_until(lambda: first.rows() >= 12, 180, "the host to checkpoint twice")
    edge.send_signal(signal.SIGKILL)
    first.proc.send_signal(signal.SIGKILL)
    edge.wait(30), first.proc.wait(30)
    shutil.rmtree(tmp_path / "cloud-state")  # the host's disk is gone
    second = start_cloud(small_bundle, tmp_path, tag="cloud2")
    out = subprocess.run(
        edge_cmd(small_bundle, second.url, tmp_path, *RUN, "--resume"),
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        cwd=tmp_path,
    )
    second.proc.kill()
    assert out.returncode == 1, out.stderr
    assert "its state was lost" in out.stderr and "Traceback" not in out.stderr
