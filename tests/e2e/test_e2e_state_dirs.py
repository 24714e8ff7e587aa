"""One process per state directory: a second host on a live host's --state-dir (a plain one
or a `--ranks` launch), or a second edge on a live edge's --work-dir, is refused in one line
(exit 2) and the live state is kept.

Both were accepted: two hosts wrote one set of tail checkpoints, and a second edge with
--fresh emptied the live run's spool and progress under it. The lock is the kernel's (flock),
dropped when its holder dies: after SIGKILL the same work dir resumes. Real processes, TCP.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from e2e_harness import ENV, edge_cmd, free_port, run_edge, spawn_edge, start_cloud, wait_until

TRAIN = ["--data", "synthetic:400", "--epochs", "1", "--batch-size", "32"]  # 320 train: 10


def test_a_second_host_or_edge_on_live_state_is_refused(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path)  # waits for an edge: holds cloud-state
    nobody = f"socket://127.0.0.1:{free_port()}"
    edge = spawn_edge(small_bundle, nobody, tmp_path, *TRAIN, "--connect-timeout", "120")
    try:
        wait_until(lambda: (tmp_path / "edge-work" / "progress.json").exists(), 120, "a run")
        host = subprocess.run(
            [sys.executable, "-m", "host.cli", "serve", "--bundle", str(small_bundle),
             "--listen", "tcp://127.0.0.1:0", "--state-dir", str(tmp_path / "cloud-state")],
            capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        # A torchrun launch took no lock at all: its ranks would have written the live host's
        # checkpoints. Refused before it starts torchrun (no log of one appears).
        ranks = subprocess.run(
            [sys.executable, "-m", "host.cli", "serve", "--bundle", str(small_bundle),
             "--listen", "tcp://127.0.0.1:0", "--shared-tail", "--ranks", "2",
             "--state-dir", str(tmp_path / "cloud-state")],
            capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        assert not (tmp_path / "cloud-state" / "ranks").exists()
        board = subprocess.run(
            edge_cmd(small_bundle, cloud.url, tmp_path, *TRAIN, "--fresh"),
            capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        for out, who in (
            (host, "hostctl serve"),
            (ranks, "hostctl serve"),
            (board, "edge-runtime run"),
        ):
            assert out.returncode == 2, out.stderr[-2000:]
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and f"is in use by another {who}" in lines[0], out.stderr
        assert edge.poll() is None, "the live edge was still waiting for its host"
        assert (tmp_path / "edge-work" / "progress.json").exists()  # not emptied under it
        edge.send_signal(signal.SIGKILL)
        edge.wait(60)
        run_edge(small_bundle, cloud.url, tmp_path, *TRAIN, "--resume")  # the lock died with it
        report = cloud.finish()
    finally:
        for proc in (edge, cloud.proc):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert report["batches_trained_cloud"] == 10
