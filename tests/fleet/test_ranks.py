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
from collections.abc import Iterator
from pathlib import Path

import pytest
from launchers import Edge, Launcher, alive

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
EDGES = 4
SAMPLES = 400  # synthetic: 80% train -> 20 batches of 16 per edge
PER_EDGE = 20
START_S = 240  # the ranks listen within this, or the test fails (and kills them), not hangs


@pytest.fixture(scope="module")
def bundle(exported) -> Path:
    return exported("smallcnn", 2)


@pytest.fixture
def fleet() -> Iterator[list]:
    """Everything a test starts (Ranks and edge processes), killed whatever the outcome:
    a failed or timed-out test leaves no torchrun, rank or edge behind."""
    started: list = []
    yield started
    for thing in reversed(started):
        thing.kill()


class Ranks(Launcher):
    """A running `hostctl serve --shared-tail --ranks 2`, in a process group of its own."""

    def __init__(self, bundle: Path, tmp: Path, *args: str, listen: str = "tcp://127.0.0.1:0"):
        self.report = tmp / "report.json"
        cmd = [
            sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle),
            "--listen", listen, "--shared-tail", "--ranks", "2",
            "--state-dir", str(tmp / "state"), "--report", str(self.report),
            "--metrics-csv", str(tmp / "metrics.csv"), "--checkpoint-every", "3",
            "--exit-when-done", "--expect-edges", str(EDGES), "--rank-hashes", *args,
        ]  # fmt: skip
        super().__init__(cmd, tmp, tmp / "state", tmp / "serve.err", ENV, "the ranks")

    def wait_listening(self, timeout: float = START_S) -> None:
        """Read the ranks' 'listening on tcp://H:P (rank r of 2)' lines, within `timeout`."""
        self.wait_ports(2, 2, timeout)

    def rows(self, rank: int) -> int:
        path = self.tmp / f"metrics.csv.rank{rank}"
        return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        rc = self.wait_done(timeout)
        return rc, "".join(self.out), self.err_path.read_text()


def start_edges(
    bundle: Path,
    ranks: Ranks,
    fleet: list,
    slowdown: str,
    which: range = range(EDGES),
    epochs: int = 1,
    samples: int = SAMPLES,
) -> list[subprocess.Popen]:
    """Edge i connects to rank i % 2, with its own data (seed i)."""
    edges = []
    for i in which:
        cmd = [
            sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge"),
            "--connect", f"socket://127.0.0.1:{ranks.ports[i % 2]}",
            "--work-dir", str(ranks.tmp / f"edge{i}"), "--edge-id", f"cam{i}",
            "--data", f"synthetic:{samples}", "--seed", str(i), "--epochs", str(epochs),
            "--batch-size", "16", "--slowdown", slowdown,
            "--report", str(ranks.tmp / f"edge{i}.json"),
        ]  # fmt: skip
        log = open(ranks.tmp / f"edge{i}.log", "w")  # noqa: SIM115 - the child keeps it
        edges.append(Edge(cmd, stdout=log, stderr=log, env=ENV, cwd=ranks.tmp))
        fleet.append(edges[-1])
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


def test_four_edges_on_two_ranks_train_each_batch_once_into_one_tail(
    bundle, tmp_path, fleet
) -> None:
    ranks = Ranks(bundle, tmp_path, "--model-out", str(tmp_path / "models"))
    fleet.append(ranks)
    ranks.wait_listening()
    # cam0 first: the ranks wait for all four edges, so they are up when its twin comes.
    edges = start_edges(bundle, ranks, fleet, slowdown="1", which=range(1))
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
    edges += start_edges(bundle, ranks, fleet, slowdown="1", which=range(1, EDGES))
    report = check_fleet(ranks, edges, refused=1)
    assert [r["restart"] for r in report["ranks"]] == [0, 0]
    # Both ranks trained: every edge stayed on the rank it reached.
    assert {e["edge_id"] for e in report["edges"][:2]} in ({"cam0", "cam2"}, {"cam1", "cam3"})
    # --model-out: each rank wrote its edges' models, each edge's front on the one tail.
    import torch

    models = {
        d.name: torch.load(d / "model.pt", weights_only=True)
        for d in sorted((tmp_path / "models").iterdir())
    }
    assert sorted(models) == [f"cam{i}" for i in range(EDGES)]
    tails = [m["tail"] for m in models.values()]
    for tail in tails[1:]:
        assert tail.keys() == tails[0].keys()
        assert all(torch.equal(tail[k], tails[0][k]) for k in tail)
    fronts = [m["edge"] for m in models.values()]
    assert any(not torch.equal(fronts[0][k], fronts[1][k]) for k in fronts[0])  # their own
    for d in (tmp_path / "models").iterdir():
        assert {"edge.onnx", "tail.onnx", "full.onnx", "model.json"} <= {
            f.name for f in d.iterdir()
        }


def test_ranks_step_one_tail_at_one_rate_under_an_lr_schedule(exported, tmp_path, fleet) -> None:
    """A bundle whose rate halves every epoch; on each rank a fast and a slow edge, two epochs
    each, so the ranks' batches of one collective step come from different epochs. Every
    rank steps with the latest epoch's rate: the two replicas stay identical after every step
    (a rank stepping at its own edge's rate would part them), and every batch trains once."""
    bundle = exported("smallcnn", 2, lr_schedule="step:every=1,gamma=0.5")
    ranks = Ranks(bundle, tmp_path)
    fleet.append(ranks)
    ranks.wait_listening()
    edges = start_edges(bundle, ranks, fleet, "1", range(2), epochs=2, samples=160)
    edges += start_edges(bundle, ranks, fleet, "4", range(2, EDGES), epochs=2, samples=160)
    for i, edge in enumerate(edges):
        assert edge.wait(600) == 0, (ranks.tmp / f"edge{i}.log").read_text()[-3000:]
    rc, _, err = ranks.finish()
    assert rc == 0, err[-3000:]
    report = json.loads(ranks.report.read_text())
    assert not report["errors"], report["errors"]
    for one in report["edges"]:  # 160 samples: 128 to train, 8 batches of 16 an epoch
        assert sorted(map(tuple, one["trained_ids"])) == [
            (e, i) for e in range(2) for i in range(8)
        ]
    first, second = report["ranks"]
    assert first["optimizer_steps"] == second["optimizer_steps"] > 0
    assert first["step_sha256"] == second["step_sha256"]
    assert first["tail_sha256"] == second["tail_sha256"]


def test_a_sigkilled_rank_is_restarted_and_nothing_is_lost_or_doubled(
    bundle, tmp_path, fleet
) -> None:
    ranks = Ranks(bundle, tmp_path, "--max-restarts", "2")
    fleet.append(ranks)
    ranks.wait_listening()
    edges = start_edges(bundle, ranks, fleet, slowdown="4")
    deadline = time.monotonic() + 300
    while ranks.rows(1) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ranks.rows(1) >= 8, "rank 1 never trained 8 batches"
    pid = int((ranks.state / "ranks" / "rank-1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    report = check_fleet(ranks, edges)
    # Every rank of the last life is a restarted one, started from the shared checkpoint.
    assert [r["restart"] for r in report["ranks"]] == [1, 1]


def _taken_after_a_free_port() -> tuple[socket.socket, int]:
    """A listening socket on port P + 1 where P was free just now (rank 0 gets P, rank 1 the
    taken one); a P that someone else holds would make rank 0 fail instead."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] - 1
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return taken, port
            except OSError:
                taken.close()
    pytest.fail("found no free port below a taken one in 50 tries")


def test_a_rank_that_cannot_listen_is_one_clear_line(bundle, tmp_path, fleet) -> None:
    taken, port = _taken_after_a_free_port()
    with taken:
        ranks = Ranks(bundle, tmp_path, "--max-restarts", "0", listen=f"tcp://127.0.0.1:{port}")
        fleet.append(ranks)
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
        (("--shared-tail", "--average-fronts-every", "1epochs"), "not built for --ranks"),
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


def test_a_killed_launcher_leaves_no_torchrun_or_rank_behind(bundle, tmp_path, fleet) -> None:
    """SIGKILL of `hostctl serve --ranks` alone (what a benchmark's or a test's kill did):
    torchrun gets SIGTERM from the kernel and stops its ranks; a rank whose torchrun is gone
    leaves by itself, so no stray rank outlives its run. (The start-up that once seemed to
    hang was two ranks' "listening" lines merged into one; each is now one write.)"""
    ranks = Ranks(bundle, tmp_path, "--max-restarts", "0")
    fleet.append(ranks)
    ranks.wait_listening()
    rank_pids = ranks.rank_pids()
    torchrun = int(
        Path(f"/proc/{rank_pids[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]
    )  # the ranks' parent
    assert len(rank_pids) == 2 and all(map(alive, [*rank_pids, torchrun]))
    # While it runs (its two ranks sharing its state dir), a second launch on that directory is
    # refused in one line before it starts a torchrun: it took no lock and ran a second set of
    # ranks on the same checkpoints.
    second = subprocess.run(
        [sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle), "--listen",
         "tcp://127.0.0.1:0", "--shared-tail", "--ranks", "2", "--state-dir", str(ranks.state)],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert second.returncode == 2, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by another hostctl serve" in lines[0], second.stderr
    os.kill(ranks.proc.pid, signal.SIGKILL)  # the launcher only, not its group
    ranks.proc.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(map(alive, [*rank_pids, torchrun])):
        time.sleep(0.2)
    left = [pid for pid in [*rank_pids, torchrun] if alive(pid)]
    assert not left, f"still running: {left}\n{ranks.logs()}"


def test_ranks_whose_torchrun_is_killed_leave(bundle, tmp_path, fleet) -> None:
    """SIGKILL of torchrun itself: nothing passes SIGTERM on to its ranks (each in a session of
    its own); each rank sees its parent gone and leaves, and the launcher fails in one line."""
    ranks = Ranks(bundle, tmp_path, "--max-restarts", "0")
    fleet.append(ranks)
    ranks.wait_listening()
    rank_pids = ranks.rank_pids()
    torchrun = int(Path(f"/proc/{rank_pids[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(torchrun, signal.SIGKILL)
    rc, _, err = ranks.finish(timeout=300)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(map(alive, rank_pids)):
        time.sleep(0.2)
    assert not any(map(alive, rank_pids)), ranks.logs()
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert "torchrun" in err and "is gone; leaving" in err, err


def test_a_rank_missing_at_start_is_named_not_waited_on(bundle, tmp_path) -> None:
    """Two ranks started by hand (no torchrun: rank 0 hosts the store). Rank 1 stalls before
    the start-up barrier (its --key-file is a FIFO that no one writes: a read that never
    returns, as the hung start-up's rank never came); rank 0 names rank 1 after
    --start-timeout instead of waiting in the next collective for --timeout."""
    stalled = tmp_path / "key.fifo"
    os.mkfifo(stalled)
    with socket.socket() as s:  # a free port for the store, as torchrun would pick one
        s.bind(("127.0.0.1", 0))
        store_port = s.getsockname()[1]
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = f"{a.getsockname()[1]},{b.getsockname()[1]}"
    state = tmp_path / "state"
    procs = []
    for rank, key in ((0, []), (1, ["--key-file", str(stalled)])):
        env = {
            **ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store_port),
        }  # fmt: skip
        cmd = [
            sys.executable, "-m", "host.cloud.distributed", "--bundle", str(bundle),
            "--state-dir", str(state), "--ports", ports, "--start-timeout", "20",
            "--timeout", "1000", *key,
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    try:
        out0, err0 = procs[0].communicate(timeout=280)
    finally:
        for p in procs:  # rank 1 waits on its FIFO for good: it is killed here
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 1, err0[-3000:]
    error = (state / "ranks" / "rank-0.error").read_text()
    assert "the ranks did not all load the bundle (waited up to 20 s)" in error, error
    assert re.search(r"Ranks? 1 failed to pass monitoredBarrier", error), error
    assert "listening on" not in out0
