"""`hostctl serve --shared-tail --ranks 2`: one tail on two torch.distributed ranks (real
torchrun, gloo, real TCP), four `edge-runtime run` processes on synthetic data, smallcnn.

Each test costs a minute or more on a loaded 2-core machine (two torch processes, torchrun, four
edges); the timeouts are generous and nothing asserts on wall-clock time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
EDGES = 4
SAMPLES = 400  # synthetic: 80% train -> 20 batches of 16 per edge
PER_EDGE = 20


@pytest.fixture(scope="module")
def bundle(exported) -> Path:
    return exported("smallcnn", 2)


class Ranks:
    """A running `hostctl serve --shared-tail --ranks 2`."""

    def __init__(self, bundle: Path, tmp: Path, *args: str, listen: str = "tcp://127.0.0.1:0"):
        self.tmp = tmp
        self.state = tmp / "state"
        self.report = tmp / "report.json"
        cmd = [
            sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle),
            "--listen", listen, "--shared-tail", "--ranks", "2",
            "--state-dir", str(self.state), "--report", str(self.report),
            "--metrics-csv", str(tmp / "metrics.csv"), "--checkpoint-every", "3",
            "--exit-when-done", "--expect-edges", str(EDGES), "--rank-hashes", *args,
        ]  # fmt: skip
        self.err = open(tmp / "serve.err", "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.err, text=True, env=ENV, cwd=tmp
        )
        self.ports: dict[int, int] = {}

    def wait_listening(self) -> None:
        """Read the ranks' 'listening on tcp://H:P (rank r of 2)' lines."""
        while len(self.ports) < 2:
            line = self.proc.stdout.readline()
            assert line, (self.tmp / "serve.err").read_text()[-3000:]
            found = re.search(r"listening on tcp://[\d.]+:(\d+) \(rank (\d) of 2\)", line)
            if found:
                self.ports[int(found[2])] = int(found[1])

    def rows(self, rank: int) -> int:
        path = self.tmp / f"metrics.csv.rank{rank}"
        return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self.err.close()
        return self.proc.returncode, out, (self.tmp / "serve.err").read_text()


def start_edges(
    bundle: Path, ranks: Ranks, slowdown: str, which: range = range(EDGES)
) -> list[subprocess.Popen]:
    """Edge i connects to rank i % 2, with its own data (seed i)."""
    edges = []
    for i in which:
        cmd = [
            sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge"),
            "--connect", f"socket://127.0.0.1:{ranks.ports[i % 2]}",
            "--work-dir", str(ranks.tmp / f"edge{i}"), "--edge-id", f"cam{i}",
            "--data", f"synthetic:{SAMPLES}", "--seed", str(i), "--epochs", "1",
            "--batch-size", "16", "--slowdown", slowdown,
            "--report", str(ranks.tmp / f"edge{i}.json"),
        ]  # fmt: skip
        log = open(ranks.tmp / f"edge{i}.log", "w")  # noqa: SIM115 - the child keeps it
        edges.append(subprocess.Popen(cmd, stdout=log, stderr=log, env=ENV, cwd=ranks.tmp))
    return edges


def check_fleet(ranks: Ranks, edges: list[subprocess.Popen], refused: int = 0) -> dict:
    """Every edge done; every batch of every edge trained exactly once; one tail on both
    ranks after every synchronised step; `refused` handshakes the only errors. Returns the
    merged report."""
    for i, edge in enumerate(edges):
        assert edge.wait(600) == 0, (ranks.tmp / f"edge{i}.log").read_text()[-3000:]
    rc, out, err = ranks.finish()
    assert rc == 0, err[-3000:]
    assert "ranks done: 80 batches in the shared tail from 4 edges on 2 ranks" in err
    report = json.loads(ranks.report.read_text())
    assert len(report["errors"]) == refused, report["errors"]
    assert all("trains on rank" in e for e in report["errors"])
    by_id = {e["edge_id"]: e for e in report["edges"]}
    assert sorted(by_id) == [f"cam{i}" for i in range(EDGES)]
    for one in by_id.values():
        assert one["done"]
        assert sorted(map(tuple, one["trained_ids"])) == [(0, i) for i in range(PER_EDGE)]
        assert one["unique_batches_trained"] == PER_EDGE
    assert report["shared_tail"]["steps"] == EDGES * PER_EDGE
    first, second = report["ranks"]
    assert first["batches_in_tail"] == second["batches_in_tail"] == EDGES * PER_EDGE
    assert first["optimizer_steps"] == second["optimizer_steps"] > 0
    assert len(first["step_sha256"]) == first["optimizer_steps"]
    assert first["step_sha256"] == second["step_sha256"]  # the same tail after every step
    assert first["tail_sha256"] == second["tail_sha256"]
    return report


def test_four_edges_on_two_ranks_train_each_batch_once_into_one_tail(bundle, tmp_path) -> None:
    ranks = Ranks(bundle, tmp_path)
    ranks.wait_listening()
    # cam0 first: the ranks wait for all four edges, so they are up when its twin comes.
    edges = start_edges(bundle, ranks, slowdown="1", which=range(1))
    metrics0 = tmp_path / "metrics.csv.rank0"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
        metrics0.exists() and ",cam0," in metrics0.read_text()
    ):
        time.sleep(0.1)
    # A second board claiming cam0's id on the other rank is refused, naming cam0's rank.
    twin = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_runtime.cli",
            "run",
            "--bundle",
            str(bundle / "edge"),
            "--connect",
            f"socket://127.0.0.1:{ranks.ports[1]}",
            "--edge-id",
            "cam0",
            "--work-dir",
            str(tmp_path / "twin"),
            "--data",
            "synthetic:64",
            "--epochs",
            "1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert twin.returncode == 1, twin.stderr[-2000:]
    assert "edge id 'cam0' trains on rank 0" in twin.stderr, twin.stderr[-2000:]
    edges += start_edges(bundle, ranks, slowdown="1", which=range(1, EDGES))
    report = check_fleet(ranks, edges, refused=1)
    assert [r["restart"] for r in report["ranks"]] == [0, 0]
    # Both ranks trained: every edge stayed on the rank it reached.
    assert {e["edge_id"] for e in report["edges"][:2]} in ({"cam0", "cam2"}, {"cam1", "cam3"})


def test_a_sigkilled_rank_is_restarted_and_nothing_is_lost_or_doubled(bundle, tmp_path) -> None:
    ranks = Ranks(bundle, tmp_path, "--max-restarts", "2")
    ranks.wait_listening()
    edges = start_edges(bundle, ranks, slowdown="4")
    deadline = time.monotonic() + 300
    while ranks.rows(1) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ranks.rows(1) >= 8, "rank 1 never trained 8 batches"
    pid = int((ranks.state / "ranks" / "rank-1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    report = check_fleet(ranks, edges)
    # Every rank of the last life is a restarted one, started from the shared checkpoint.
    assert [r["restart"] for r in report["ranks"]] == [1, 1]


def test_a_rank_that_cannot_listen_is_one_clear_line(bundle, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] - 1  # rank 0 gets port, rank 1 gets the taken one
        ranks = Ranks(bundle, tmp_path, "--max-restarts", "0", listen=f"tcp://127.0.0.1:{port}")
        rc, out, err = ranks.finish(timeout=300)
    assert rc == 1, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"rank 1 cannot listen on tcp://127.0.0.1:{port + 1}" in lines[0]
    assert "torchrun log" in lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--ranks trains a shared tail: give --shared-tail"),
        (("--shared-tail", "--model-out", "out"), "--ranks serves TCP only"),
        (("--shared-tail", "--device", "cuda"), "--device cuda: ranks train on the CPU"),
    ],
)
def test_ranks_usage_errors_are_one_line(bundle, tmp_path, extra, message) -> None:
    cmd = [
        sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle),
        "--listen", "tcp://127.0.0.1:0", "--ranks", "2", "--state-dir", str(tmp_path), *extra,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
