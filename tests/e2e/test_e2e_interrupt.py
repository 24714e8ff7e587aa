"""Ctrl-C on the edge: exit 130 with how to resume; the resumed run trains every batch once."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
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

RUN = ["--data", "synthetic", "--epochs", "2", "--batch-size", "32"]
TRAIN, BATCH, EPOCHS = 2400, 32, 2


def test_ctrl_c_on_the_edge_exits_130_and_says_how_to_resume(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path, listen=f"tcp://127.0.0.1:{free_port()}")
    edge = spawn_edge(small_bundle, cloud.url, tmp_path, *RUN)
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


def _edge_to_nobody(bundle, tmp_path, *args: str) -> tuple[subprocess.Popen, Path]:
    """An edge whose host is not there (a closed port), with stderr in a file to poll."""
    err = tmp_path / "edge.err"
    cmd = edge_cmd(bundle, f"socket://127.0.0.1:{free_port()}", tmp_path, *args)
    with err.open("w") as sink:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=sink, text=True, env=ENV, cwd=tmp_path
        )
    return proc, err


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # the process is gone: nothing more will be mapped
        return "gone"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/PID/maps")
def test_ctrl_c_while_onnxruntime_imports_is_an_interruption(small_bundle, tmp_path) -> None:
    """SIGINT as soon as onnxruntime's extension is mapped, i.e. during `import onnxruntime`:
    the edge's handler is already set, so the import completes and the run ends as
    interrupted (130), not as "failed: ImportError: initialization failed"."""
    proc, err = _edge_to_nobody(
        small_bundle,
        tmp_path,
        "--engine",
        "ort",
        "--data",
        "synthetic:64",
        "--connect-timeout",
        "600",
    )
    try:
        wait_until(lambda: "onnxruntime" in _maps(proc.pid), 120, "onnxruntime being imported")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)  # far below --connect-timeout: the signal ended the wait
    finally:
        proc.kill()
    text = err.read_text()
    assert proc.returncode == 130, text[-2000:]
    assert "ImportError" not in text and "Traceback" not in text, text[-2000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("edge-runtime: interrupted: stopped before run "), last
    assert last.endswith("nothing was trained or sent; run the same command again"), last


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_signal_ends_the_wait_for_a_missing_host(small_bundle, tmp_path, sig, code) -> None:
    """The connect loop retries for --connect-timeout; Ctrl-C (130) or SIGTERM (0) ends it at
    once, and the never-started run does not block the next one."""
    proc, err = _edge_to_nobody(
        small_bundle, tmp_path, "--data", "synthetic:64", "--connect-timeout", "600"
    )
    try:
        wait_until(lambda: "waiting for socket://" in err.read_text(), 120, "a connect retry")
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    text = err.read_text()
    assert proc.returncode == code, text[-2000:]
    assert "Traceback" not in text and "cannot reach the host" not in text, text[-2000:]
    assert "nothing was trained or sent; run the same command again" in text, text[-2000:]
    again, err = _edge_to_nobody(
        small_bundle, tmp_path, "--data", "synthetic:64", "--connect-timeout", "0.5"
    )
    assert again.wait(timeout=120) == 1  # no --fresh needed: it got as far as connecting
    assert "cannot reach the host" in err.read_text()


def test_resume_with_another_bundle_is_refused(small_bundle, exported, tmp_path) -> None:
    """A work dir whose run started with split 3, resumed with a split-2 bundle (a re-export
    over it, say): exit 2 naming what differs, before connecting (the old engine checkpoint
    loaded and the first step failed: "feed names has 35 elements, but feed has 30")."""
    first, err = _edge_to_nobody(
        small_bundle, tmp_path, "--data", "synthetic:64", "--connect-timeout", "0.5"
    )
    assert first.wait(timeout=120) == 1, err.read_text()[-2000:]
    other = exported("smallcnn", 2, lr=3e-3)
    again, err = _edge_to_nobody(other, tmp_path, "--data", "synthetic:64", "--resume")
    assert again.wait(timeout=120) == 2, err.read_text()[-2000:]
    last = err.read_text().strip().splitlines()[-1]
    assert last.startswith("edge-runtime: error: --resume: run "), last
    assert "split 3 vs 2" in last and last.endswith("or start over with --fresh"), last


def test_resume_with_other_data_is_refused(small_bundle, tmp_path) -> None:
    """A run resumed with other data (another file, or the same one with another --limit):
    exit 2 naming what differs. It trained on: batch ids (epoch, index) then named other
    samples, so the host's record skipped some and took others twice, and the model's
    normalisation and class names were the new data's."""
    cloud = start_cloud(small_bundle, tmp_path)
    try:
        run_edge(small_bundle, cloud.url, tmp_path, "--data", "synthetic:160", "--epochs", "1")
        for data, differs in (
            (["--data", "synthetic:160", "--limit", "64"], "train-split statistics"),
            (["--data", str(tmp_path / "other.npz")], "data synthetic vs npz:other.npz"),
        ):
            if "other.npz" in data[-1]:
                rng = np.random.default_rng(0)
                x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
                np.savez(data[-1], x=x, y=np.arange(64) % 10)
            cmd = edge_cmd(small_bundle, cloud.url, tmp_path, *data, "--epochs", "2", "--resume",
                           "--connect-timeout", "1")  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
            assert out.returncode == 2, out.stderr[-2000:]
            last = out.stderr.strip().splitlines()[-1]
            assert last.startswith("edge-runtime: error: --resume: run "), last
            assert differs in last and last.endswith("or start over with --fresh"), last
    finally:
        cloud.proc.kill()
        cloud.proc.wait()


def test_resume_with_only_another_seed_is_refused(small_bundle, tmp_path) -> None:
    """The same file resumed with only another --seed: its train split and statistics are the
    same (a .npz keeps its order), but the shuffle is not, so batch ids (epoch, index) would name
    other samples than the host's record. It was taken; now exit 2 naming the seeds."""
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.integers(0, 256, (160, 32, 32, 3), dtype=np.uint8), y=np.arange(160) % 10)
    cloud = start_cloud(small_bundle, tmp_path)
    try:
        run_edge(small_bundle, cloud.url, tmp_path, "--data", str(data), "--epochs", "1")
        cmd = edge_cmd(small_bundle, cloud.url, tmp_path, "--data", str(data), "--seed", "1",
                       "--epochs", "2", "--resume", "--connect-timeout", "1")  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    finally:
        cloud.proc.kill()
        cloud.proc.wait()
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-runtime: error: --resume: run "), last
    assert "--seed 0 vs 1, another shuffle" in last, last
    assert last.endswith("or start over with --fresh"), last


def test_ctrl_c_with_the_host_gone_ends_at_once_and_resumes_exactly_once(
    small_bundle, tmp_path
) -> None:
    """The host is SIGKILLed mid-run and the edge, its window full, retries; Ctrl-C then ends
    it as interrupted within seconds (it was held for the whole reconnect timeout, then
    "failed"), keeping no checkpoint past the spool, and --resume trains every batch once."""
    cloud = start_cloud(small_bundle, tmp_path, listen=f"tcp://127.0.0.1:{free_port()}")
    err = tmp_path / "edge.err"
    cmd = edge_cmd(small_bundle, cloud.url, tmp_path, *RUN, "--window", "2", "--slowdown", "3")
    with err.open("w") as sink:
        edge = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink, env=ENV, cwd=tmp_path)
    try:
        wait_until(lambda: cloud.rows() >= 5, 120, "5 trained batches")
        cloud.proc.send_signal(signal.SIGKILL)
        cloud.proc.wait(60)
        wait_until(lambda: "waiting for socket://" in err.read_text(), 120, "the edge retrying")
        edge.send_signal(signal.SIGINT)
        edge.wait(timeout=50)  # the reconnect timeout is 60 s: the signal ended the wait
    finally:
        edge.kill()
        cloud.proc.kill()  # killed already, unless a wait above failed first
    text = err.read_text()
    assert edge.returncode == 130, text[-2000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("edge-runtime: interrupted: stopped at "), last
    assert last.endswith(f"continue with --resume --work-dir {tmp_path / 'edge-work'}"), last
    again = start_cloud(small_bundle, tmp_path, listen=cloud.listening.split()[-1], tag="cloud2")
    try:
        run_edge(small_bundle, again.url, tmp_path, *RUN, "--resume", tag="edge2")
        (record,) = again.finish()["edges"]
    finally:
        again.proc.kill()  # a host left waiting for its edge by a failed run
        again.proc.wait(60)
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)


def test_ctrl_c_while_the_edge_waits_for_the_last_metrics(small_bundle, tmp_path) -> None:
    """Training done, the host frozen (SIGSTOP) before it scored the run: the edge waits for
    its final METRICS and for the spool to drain (up to 2 x 120 s). Ctrl-C ends that wait as
    an interruption (it was ignored), and --resume delivers the rest exactly once."""
    run = ["--data", "synthetic:800", "--epochs", "1", "--batch-size", "32"]
    cloud = start_cloud(small_bundle, tmp_path, listen=f"tcp://127.0.0.1:{free_port()}")
    try:
        err = tmp_path / "edge.err"
        cmd = edge_cmd(small_bundle, cloud.url, tmp_path, *run, "--slowdown", "4")
        with err.open("w") as sink:
            edge = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=sink, env=ENV, cwd=tmp_path
            )
        try:
            # Frozen with the last 5 of its 20 batches still to train, so it cannot have scored
            # the run (at 20 it could, before the signal landed, on a loaded machine); the
            # edge's rest and its evaluation fit in the link's window of 16 unacked messages.
            wait_until(lambda: cloud.rows() >= 15, 120, "15 training batches at the host")
            cloud.proc.send_signal(signal.SIGSTOP)
            wait_until(lambda: "eval batch 2/2" in err.read_text(), 120, "the edge's last eval")
            edge.send_signal(signal.SIGINT)
            edge.wait(timeout=60)
        finally:
            edge.kill()
            cloud.proc.send_signal(signal.SIGCONT)
        text = err.read_text()
        assert edge.returncode == 130, text[-2000:]
        last = text.strip().splitlines()[-1]
        assert last.startswith("edge-runtime: interrupted: stopped at epoch 1 batch 0"), last
        run_edge(small_bundle, cloud.url, tmp_path, *run, "--resume", tag="edge2")
        (record,) = cloud.finish()["edges"]
        assert record["trained_ids"] == expected_ids(640, 32, 1)
    finally:
        cloud.proc.send_signal(signal.SIGCONT)
        cloud.proc.kill()  # a host left waiting for its edge by a failed assertion
        cloud.proc.wait(60)
