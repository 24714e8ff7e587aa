"""`hostctl serve --shared-tail --ranks N --nnodes 2 --node-rank K --rdzv-endpoint H:P`: the
shared tail on two "nodes", two launchers on 127.0.0.1 with state dirs of their own (real
torchrun with its static rendezvous, gloo, real TCP), an `edge-runtime run` process per rank,
smallcnn: one and two ranks per node, a SIGKILLed rank restarted, the rendezvous failures.

Each training test took 18-25 s on this loaded 2-core machine (three of them; the whole file
96 s): they belong with tests/fleet/test_ranks.py in `make test-slow`. The rendezvous errors
take 5-8 s each. Nothing asserts on wall-clock time.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from launchers import Edge, Launcher, alive

from host.linkemu.netns import NamespaceLink, kernel_shaping_available
from host.linkemu.presets import LinkSpec

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
NODES = 2
SAMPLES = 200  # synthetic: 80% train -> 10 batches of 16 per edge
PER_EDGE = 10
START_S = 240  # both nodes listen within this, or the test fails (and kills them), not hangs


@pytest.fixture(scope="module")
def bundle(exported) -> Path:
    return exported("smallcnn", 2)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _free_ports(count: int) -> int:
    """A port P where P .. P+count-1 are free on 127.0.0.1 just now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    pytest.fail(f"found no {count} free consecutive ports in 50 tries")


@pytest.fixture
def started() -> Iterator[list]:
    """Everything a test starts (nodes, edges), killed whatever the outcome."""
    things: list = []
    yield things
    for thing in reversed(things):
        thing.kill()


@dataclass(frozen=True)
class Machine:
    """Where a node runs: its address, and the command prefix that puts a process there."""

    address: str
    prefix: tuple[str, ...] = ()


LOCAL = Machine("127.0.0.1")


class Node(Launcher):
    """One `hostctl serve --ranks N --nnodes 2 --node-rank K` launcher, in a process group of
    its own, with a state dir of its own (as on its own machine)."""

    def __init__(
        self,
        bundle: Path,
        tmp: Path,
        node: int,
        port: int,
        endpoint: str,
        *args: str,
        per_node=1,
        at: Machine | None = None,
    ):
        self.node = node
        self.per_node = per_node
        self.at = at or LOCAL
        self.report = tmp / f"report{node}.json"
        cmd = [
            *self.at.prefix, sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle),
            "--listen", f"tcp://{self.at.address}:{port}", "--shared-tail", "--ranks", str(per_node),
            "--nnodes", str(NODES), "--node-rank", str(node), "--rdzv-endpoint", endpoint,
            "--state-dir", str(tmp / f"state{node}"), "--report", str(self.report),
            "--metrics-csv", str(tmp / f"metrics{node}.csv"), "--checkpoint-every", "3",
            "--exit-when-done", "--expect-edges", str(NODES * per_node), "--rank-hashes", *args,
        ]  # fmt: skip
        super().__init__(
            cmd, tmp, tmp / f"state{node}", tmp / f"serve{node}.err", ENV, f"node {node}"
        )

    def wait_listening(self, timeout: float = START_S) -> dict[int, int]:
        """This node's ranks' 'listening on tcp://H:P (rank r of W)' lines, within `timeout`."""
        return self.wait_ports(self.per_node, NODES * self.per_node, timeout)

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        rc = self.wait_done(timeout)
        return rc, self.err_path.read_text()


def start_edge(
    bundle: Path,
    tmp: Path,
    i: int,
    port: int,
    started: list,
    slowdown: str = "1",
    at: Machine | None = None,
) -> Edge:
    at = at or LOCAL
    cmd = [
        *at.prefix, sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge"),
        "--connect", f"socket://{at.address}:{port}", "--work-dir", str(tmp / f"edge{i}"),
        "--edge-id", f"cam{i}", "--data", f"synthetic:{SAMPLES}", "--seed", str(i),
        "--epochs", "1", "--batch-size", "16", "--slowdown", slowdown,
        "--report", str(tmp / f"edge{i}.json"),
    ]  # fmt: skip
    log = open(tmp / f"edge{i}.log", "w")  # noqa: SIM115 - the child keeps it
    edge = Edge(cmd, stdout=log, stderr=log, env=ENV, cwd=tmp)
    started.append(edge)
    return edge


@pytest.mark.parametrize("per_node", [1, 2], ids=["1-rank-each", "2-ranks-each"])
def test_two_nodes_train_each_batch_once_into_one_tail(bundle, tmp_path, started, per_node) -> None:
    reports = two_nodes(bundle, tmp_path, started, per_node)
    assert [r["restart"] for report in reports for r in report["ranks"]] == [0] * NODES * per_node


def test_a_sigkilled_rank_on_node_1_is_restarted_and_nothing_is_lost_or_doubled(
    bundle, tmp_path, started
) -> None:
    """SIGKILL of node 1's rank mid-run: rank 0's collective fails, each node's torchrun
    restarts its own rank, and both join the next life at the same static rendezvous."""

    def kill_rank_1(nodes: list[Node]) -> None:
        rows = tmp_path / "metrics1.csv.rank1"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (
            not rows.exists() or len(rows.read_text().splitlines()) < 5
        ):
            time.sleep(0.1)
        assert rows.exists() and len(rows.read_text().splitlines()) >= 5, nodes[1].logs()
        os.kill(nodes[1].rank_pids()[0], signal.SIGKILL)

    reports = two_nodes(
        bundle, tmp_path, started, 1, "--max-restarts", "2", slowdown="4", during=kill_rank_1
    )
    assert [r["restart"] for report in reports for r in report["ranks"]] == [1, 1]


def two_nodes(
    bundle: Path,
    tmp_path: Path,
    started: list,
    per_node: int,
    *args: str,
    slowdown: str = "1",
    during: Callable[[list[Node]], None] | None = None,
    machines: tuple[Machine, Machine] = (LOCAL, LOCAL),
) -> list[dict]:
    """Two nodes of `per_node` ranks on `machines`, an edge on each rank (on its node's
    machine), `during` called once the edges run: checks every batch of every edge trained
    once into one tail on every rank, and every process gone at the end. Returns the nodes'
    reports."""
    world = NODES * per_node
    port = _free_ports(world + 1)  # global rank r at PORT + r; the rendezvous at PORT + world
    endpoint = f"{machines[0].address}:{port + world}"
    # Node 1 first: it waits for node 0's rendezvous to come up instead of failing.
    nodes = []
    for k in (1, 0):
        node = Node(bundle, tmp_path, k, port, endpoint, *args, per_node=per_node, at=machines[k])
        nodes.append(node)
        started.append(node)
    nodes.sort(key=lambda n: n.node)
    ports: dict[int, int] = {}
    for n in nodes:
        ports.update(n.wait_listening())
    # Node K runs global ranks K*N .. K*N+N-1; global rank r listens on PORT + r.
    assert [sorted(n.ports) for n in nodes] == [
        list(range(k * per_node, (k + 1) * per_node)) for k in range(NODES)
    ]
    assert ports == {r: port + r for r in range(world)}
    processes = []  # launcher, torchrun and ranks of every node, all gone at the end
    for n in nodes:
        rank_pids = n.rank_pids()
        assert len(rank_pids) == per_node
        processes += [n.proc.pid, _parent(rank_pids[0]), *rank_pids]
    assert all(map(alive, processes))
    edges = [
        start_edge(bundle, tmp_path, r, ports[r], started, slowdown, machines[r // per_node])
        for r in range(world)
    ]
    if during is not None:
        during(nodes)
    for i, edge in enumerate(edges):
        assert edge.wait(600) == 0, (tmp_path / f"edge{i}.log").read_text()[-3000:]
    reports = []
    for n in nodes:
        rc, err = n.finish()
        assert rc == 0, n.logs()
        assert f"{world * PER_EDGE} batches in the shared tail" in err, err
        assert f"(node {n.node} of {NODES})" in err, err
        reports.append(json.loads(n.report.read_text()))
    ranks = []
    for n, report in zip(nodes, reports, strict=True):
        assert report["errors"] == []
        # Each node served the edges that connected to its ranks (edge i to global rank i).
        assert sorted(e["edge_id"] for e in report["edges"]) == [f"cam{r}" for r in sorted(n.ports)]
        for edge in report["edges"]:
            assert edge["done"]
            assert sorted(map(tuple, edge["trained_ids"])) == [(0, i) for i in range(PER_EDGE)]
            assert edge["unique_batches_trained"] == PER_EDGE
        assert report["shared_tail"]["steps"] == world * PER_EDGE
        ranks += report["ranks"]
    assert [r["rank"] for r in ranks] == list(range(world))
    assert {r["world"] for r in ranks} == {world}
    assert {r["batches_in_tail"] for r in ranks} == {world * PER_EDGE}
    steps = ranks[0]["optimizer_steps"]
    assert steps > 0 and {r["optimizer_steps"] for r in ranks} == {steps}
    assert len(ranks[0]["step_sha256"]) == steps
    for r in ranks[1:]:
        assert r["step_sha256"] == ranks[0]["step_sha256"]  # one tail after every step
        assert r["tail_sha256"] == ranks[0]["tail_sha256"]
    # Rank 0 alone writes the checkpoint, on node 0.
    assert (tmp_path / "state0" / "shared-tail.fleet").is_file()
    assert not (tmp_path / "state1" / "shared-tail.fleet").exists()
    processes += [pid for n in nodes for pid in n.rank_pids()]  # a restarted life's ranks
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(map(alive, processes)):
        time.sleep(0.2)
    assert not [pid for pid in processes if alive(pid)], "\n".join(n.logs() for n in nodes)
    return reports


def test_two_nodes_in_network_namespaces_of_their_own(bundle, tmp_path, started) -> None:
    """Two "machines": each node (its torchrun, ranks and edges) in a network namespace of its
    own, joined by a veth pair (10.200.0.1 and .2, no loopback in common). gloo's ranks must
    reach each other at the --listen address, not at whatever the host name resolves to."""
    ok, why = kernel_shaping_available()
    if not ok:
        pytest.skip(f"network namespaces: {why}")
    with NamespaceLink(LinkSpec("lan", math.inf, math.inf, 0.0)) as lan:
        machines = tuple(
            Machine(ip, ("ip", "netns", "exec", lan.namespace(side)))
            for ip, side in ((lan.host_ip, "host"), (lan.edge_ip, "edge"))
        )
        reports = two_nodes(bundle, tmp_path, started, 1, machines=machines)
    assert [r["restart"] for report in reports for r in report["ranks"]] == [0, 0]


def test_an_unreachable_rendezvous_is_one_line_not_a_hang(bundle, tmp_path, started) -> None:
    """Node 1 with no node 0 at the endpoint: one line after --rdzv-timeout, exit 1."""
    port = _free_ports(NODES + 1)
    node = Node(bundle, tmp_path, 1, port, f"127.0.0.1:{port + NODES}", "--rdzv-timeout", "3")
    started.append(node)
    rc, err = node.finish(timeout=120)
    assert rc == 1, node.logs()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert (
        f"node 1: cannot reach the rendezvous endpoint 127.0.0.1:{port + NODES} within 3 s" in err
    )
    assert not (tmp_path / "state1" / "ranks" / "torchrun.log").exists()  # torchrun never ran


def test_a_node_0_whose_peers_never_come_is_one_line(bundle, tmp_path, started) -> None:
    """Node 0 alone: torchrun's store waits --rdzv-timeout for node 1, then one line, exit 1."""
    port = _free_ports(NODES + 1)
    endpoint = f"127.0.0.1:{port + NODES}"
    node = Node(bundle, tmp_path, 0, port, endpoint, "--rdzv-timeout", "3")
    started.append(node)
    rc, err = node.finish(timeout=120)
    assert rc == 1, node.logs()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"node 0: the 2 nodes did not all meet at the rendezvous {endpoint} within 3 s" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--nnodes", "2"), "--nnodes 2: give --rdzv-endpoint HOST:PORT"),
        (("--nnodes", "2", "--rdzv-endpoint", "h:1", "--node-rank", "2"), "valid are 0 to 1"),
        (("--nnodes", "2", "--rdzv-endpoint", "nohost"), "expected HOST:PORT"),
        (("--node-rank", "1"), "need --nnodes 2 or more"),
        (
            ("--nnodes", "2", "--rdzv-endpoint", "h:1", "--listen", "tcp://127.0.0.1:0"),
            "fixed port",
        ),
    ],
)
def test_node_usage_errors_are_one_line(bundle, tmp_path, extra, message) -> None:
    cmd = [
        sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle), "--shared-tail",
        "--listen", "tcp://127.0.0.1:40000", "--ranks", "1", "--state-dir", str(tmp_path),
        *extra,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
