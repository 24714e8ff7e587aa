"""`hostctl serve --shared-tail --ranks N`: the shared tail on N torch.distributed ranks.

This process is only the launcher: it picks one port per rank, runs torchrun
(`python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts K
-m host.cloud.distributed ...`), passes SIGINT/SIGTERM on, and, when torchrun is done, merges
the ranks' reports into one and turns a failed rank into one line. The ranks themselves are
`host/cloud/distributed.py`; docs/architecture.md "Cloud ranks" says how edges reach them.

With `--nnodes M --node-rank K --rdzv-endpoint HOST:PORT` it is one node of M: torchrun's
static rendezvous (node 0 hosts the store at the endpoint) instead of `--standalone`, so that
node K's ranks are the global ranks K*N .. K*N+N-1 and each listens where edges can be told in
advance (c10d's rendezvous ignores --node-rank and orders nodes by host name and pid).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.command_line import python_safe_path
from edge_runtime.errors import HiertrainError, Interrupted, UsageFault
from edge_runtime.report import write_report
from edge_runtime.statefile import held_directory

RANKS_DIR = "ranks"  # the same name host/cloud/distributed.py writes under (kept torch-free)


class RankFailed(HiertrainError):
    """A rank could not start or kept failing past torchrun's restarts."""

    label = "ranks failed"


@dataclass(frozen=True)
class RankOptions:
    """What `hostctl serve --ranks` passes to every rank."""

    bundle_dir: Path
    state_dir: Path
    host: str
    port: int  # rank r listens on port + r; 0: the launcher picks N free ports
    ranks: int
    max_restarts: int = 3
    key_file: Path | None = None
    checkpoint_every: int = 50
    metrics_csv: Path | None = None
    window: int = 16
    shared_key: bool = True
    exit_when_done: bool = False
    expect_edges: int = 1
    hashes: bool = False
    device: str = "cpu"
    model_out: Path | None = None  # each rank writes its edges' models there at the end
    nnodes: int = 1  # machines ("nodes"), each running this launcher with `ranks` ranks
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # HOST:PORT on node 0; needed when nnodes > 1
    rdzv_timeout: float = 300.0  # how long the nodes wait for each other at the rendezvous

    @property
    def world(self) -> int:
        """Ranks on all nodes together."""
        return self.nnodes * self.ranks

    @property
    def my_ranks(self) -> range:
        """The global ranks this node runs (torchrun's static rendezvous: node-major)."""
        return range(self.node_rank * self.ranks, (self.node_rank + 1) * self.ranks)


def rank_ports(host: str, port: int, ranks: int) -> list[int]:
    """Rank r's port: `port + r`; with port 0, N free ports picked now (kept across restarts,
    so a restarted rank listens where its edges reconnect)."""
    if port:
        if port + ranks - 1 > 65535:
            raise UsageFault(f"--listen port {port} + {ranks} ranks passes 65535")
        return [port + r for r in range(ranks)]
    sockets = []
    try:
        for _ in range(ranks):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    except OSError as exc:
        raise UsageFault(f"--listen {host}: cannot bind there: {exc.strerror}") from None
    finally:
        for s in sockets:
            s.close()


def rendezvous_address(opts: RankOptions) -> tuple[str, int]:
    """(host, port) of `--rdzv-endpoint`, checked with the node options (a UsageFault)."""
    if opts.nnodes == 1:
        if opts.rdzv_endpoint is not None or opts.node_rank != 0:
            raise UsageFault("--rdzv-endpoint and --node-rank need --nnodes 2 or more")
        return "", 0
    if opts.rdzv_endpoint is None:
        raise UsageFault(f"--nnodes {opts.nnodes}: give --rdzv-endpoint HOST:PORT (on node 0)")
    if not 0 <= opts.node_rank < opts.nnodes:
        raise UsageFault(f"--node-rank {opts.node_rank}: valid are 0 to {opts.nnodes - 1}")
    if opts.port == 0:
        # Every node must know every rank's port; free ports picked here are this node's only.
        raise UsageFault(
            f"--nnodes {opts.nnodes}: give --listen a fixed port (global rank r listens on "
            "PORT + r on its node's address)"
        )
    host, _, port = opts.rdzv_endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageFault(f"--rdzv-endpoint {opts.rdzv_endpoint!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _interface_with(address: str) -> str | None:
    """The network interface holding IPv4 `address` on this machine (Linux), or None."""
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                info = fcntl.ioctl(
                    probe.fileno(), siocgifaddr, struct.pack("256s", name[:15].encode())
                )
            except OSError:  # down, or no IPv4 address
                continue
            if socket.inet_ntoa(info[20:24]) == address:
                return name
    return None


def gloo_interface(opts: RankOptions) -> str | None:
    """For several nodes: the interface this machine reaches the rendezvous endpoint through,
    for gloo's ranks to talk over (GLOO_SOCKET_IFNAME). Left to gloo on one node, or when
    the user set GLOO_SOCKET_IFNAME.

    gloo otherwise binds to what the machine's host name resolves to, often 127.0.1.1 or a
    loopback address, and tells the other nodes to connect there: they connect to themselves
    and the collective times out (measured: tests/fleet/test_nodes.py, two network namespaces).
    """
    if opts.nnodes == 1 or os.environ.get("GLOO_SOCKET_IFNAME"):
        return None
    host, port = rendezvous_address(opts)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname(host), port))  # a route only: nothing is sent
            local = probe.getsockname()[0]
    except OSError:
        return None
    return _interface_with(local)


def reach_rendezvous(opts: RankOptions) -> None:
    """Check, before torchrun, that this node can take its part in the rendezvous: node 0 can
    listen on the endpoint, another node reaches it within `rdzv_timeout` (node 0 may start
    later). torchrun's own failure here is a traceback in its log after its own timeout."""
    host, port = rendezvous_address(opts)
    if opts.nnodes == 1:
        return
    endpoint = opts.rdzv_endpoint
    if opts.node_rank == 0:
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise RankFailed(
                    f"node 0 hosts the rendezvous but cannot listen on {endpoint}: {exc.strerror}"
                ) from None
        return
    deadline = time.monotonic() + opts.rdzv_timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, opts.rdzv_timeout)):
                return
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        if time.monotonic() >= deadline:
            raise RankFailed(
                f"node {opts.node_rank}: cannot reach the rendezvous endpoint {endpoint} within "
                f"{opts.rdzv_timeout:g} s ({why}); start node 0 there (--node-rank 0, the same "
                "--nnodes and --rdzv-endpoint)"
            )
        time.sleep(0.5)


def torchrun_command(opts: RankOptions, ports: list[int]) -> list[str]:
    """The torchrun command line that starts this node's ranks."""
    if opts.nnodes == 1:
        rendezvous = ["--standalone", "--nnodes", "1"]
    else:
        rendezvous = [
            "--nnodes",
            str(opts.nnodes),
            "--node-rank",
            str(opts.node_rank),
            "--rdzv-backend",
            "static",
            "--rdzv-endpoint",
            str(opts.rdzv_endpoint),
            "--rdzv-conf",
            f"timeout={max(1, round(opts.rdzv_timeout))}",
        ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        "--nproc-per-node",
        str(opts.ranks),
        "--max-restarts",
        str(opts.max_restarts),
        "--monitor-interval",
        "0.5",
        "-m",
        "host.cloud.distributed",
        "--bundle",
        str(opts.bundle_dir),
        "--state-dir",
        str(opts.state_dir),
        "--host",
        opts.host,
        "--ports",
        ",".join(map(str, ports)),
        "--checkpoint-every",
        str(opts.checkpoint_every),
        "--window",
        str(opts.window),
        "--expect-edges",
        str(opts.expect_edges),
        "--shared-key" if opts.shared_key else "--no-shared-key",
    ]
    if opts.key_file is not None:
        cmd += ["--key-file", str(opts.key_file)]
    if opts.metrics_csv is not None:
        cmd += ["--metrics-csv", str(opts.metrics_csv)]
    if opts.exit_when_done:
        cmd.append("--exit-when-done")
    if opts.hashes:
        cmd.append("--hashes")
    if opts.model_out is not None:
        cmd += ["--model-out", str(opts.model_out)]
    return cmd


def _die_with(launcher: int) -> Callable[[], None]:
    """For torchrun's child, before exec: SIGTERM it when this launcher dies (Linux), so that
    a launcher killed outright (a test's or a benchmark's kill) leaves no torchrun behind;
    torchrun stops its ranks on SIGTERM, and each rank leaves when torchrun is gone
    (host/cloud/distributed.py, watch_parent)."""

    def arm() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != launcher:  # the launcher died before the signal was armed
                os._exit(1)

    return arm


def serve_ranks(opts: RankOptions, report: Path | None = None) -> dict[str, Any]:
    """Run the ranks until they stop; returns (and writes to `report`) the merged report."""
    if opts.device != "cpu":
        # nccl needs the tail, its optimizer state and every batch on the rank's GPU; the
        # rank's trainer is CPU-only today.
        raise UsageFault(f"--device {opts.device}: ranks train on the CPU (gloo) only")
    rendezvous_address(opts)  # a usage error before anything is written
    # One launch per state directory, as one `hostctl serve` (the same lock, so each refuses
    # the other): held here, by the launcher, for the whole life of its torchrun, so that its
    # own ranks share the directory and a second launch on it is refused before it starts any.
    with held_directory(opts.state_dir, "hostctl serve"):
        return _serve_ranks(opts, report)


def _serve_ranks(opts: RankOptions, report: Path | None) -> dict[str, Any]:
    ranks_dir = opts.state_dir / RANKS_DIR
    ranks_dir.mkdir(parents=True, exist_ok=True)
    for old in ranks_dir.glob("rank-*"):
        old.unlink()
    reach_rendezvous(opts)
    ports = rank_ports(opts.host, opts.port, opts.world)
    log_path = ranks_dir / "torchrun.log"
    with open(log_path, "w") as log:
        # The ranks' "listening on" lines reach our stdout; their logs and torchrun's go to
        # the log file (torchrun prints tracebacks a user should not have to read).
        # torchrun starts each rank as `python -m host.cloud.distributed`, which puts the
        # working directory first on sys.path; a user's own models/ there would shadow ours
        # (edge_runtime.command_line.own_module_argv keeps it off with -P, as this does).
        env = dict(os.environ, PYTHONSAFEPATH="1") if python_safe_path() else dict(os.environ)
        interface = gloo_interface(opts)
        if interface is not None:
            env["GLOO_SOCKET_IFNAME"] = interface
            print(f"node {opts.node_rank}: gloo over {interface}", file=log, flush=True)
        proc = subprocess.Popen(
            torchrun_command(opts, ports), stderr=log, env=env, preexec_fn=_die_with(os.getpid())
        )
        stopped: list[int] = []

        def stop(signum: int, _frame: object) -> None:
            # torchrun passes SIGTERM to every rank; each stops at the next collective round.
            stopped.append(signum)
            proc.send_signal(signal.SIGTERM)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            rc = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if proc.poll() is None:  # we are leaving on an exception: so does torchrun
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    merged = merge_reports(ranks_dir, opts.my_ranks)
    if report is not None and merged:
        write_report(report, merged)
    if stopped:
        raise Interrupted(
            "serve the ranks again with the same --state-dir; the edges resend what was not "
            "acknowledged"
        )
    if rc != 0:
        _wait_ranks_gone(ranks_dir)  # a rank outliving torchrun says why as it leaves
        errors = [p.read_text().strip() for p in sorted(ranks_dir.glob("rank-*.error"))]
        why = "; ".join(errors) or f"torchrun exited {rc}"
        if opts.nnodes > 1 and not errors and not any(ranks_dir.glob("rank-*.pid")):
            # No rank started: the nodes never met (the other side's store timed out or died).
            why = (
                f"node {opts.node_rank}: the {opts.nnodes} nodes did not all meet at the "
                f"rendezvous {opts.rdzv_endpoint} within {opts.rdzv_timeout:g} s"
            )
        raise RankFailed(f"{why} (torchrun log: {log_path})")
    return merged


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not); False where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_ranks_gone(ranks_dir: Path, timeout_s: float = 10.0) -> None:
    """Wait (a while) for the ranks of a failed torchrun to leave: a torchrun killed outright
    stops none of them, and each leaves within a second or two of seeing it gone
    (host/cloud/distributed.py, watch_parent), writing why in its error file."""
    pids = []
    for path in ranks_dir.glob("rank-*.pid"):
        try:
            pids.append(int(path.read_text()))
        except (OSError, ValueError):
            continue
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)


def merge_reports(ranks_dir: Path, ranks: range) -> dict[str, Any]:
    """One report from the ranks' own (`ranks`: this node's global ranks): the first rank's
    keys, every rank's edges, bytes and errors, and `ranks` with each rank's steps and tail
    hash. {} if no rank wrote one."""
    reports = []
    for r in ranks:
        path = ranks_dir / f"rank-{r}.json"
        if path.exists():
            reports.append(json.loads(path.read_text()))
    if not reports:
        return {}
    merged = dict(reports[0])
    edges = [e for rep in reports for e in rep["edges"]]
    merged["edges"] = edges
    merged["errors"] = [e for rep in reports for e in rep["errors"]]
    for key in ("bytes_up", "bytes_down", "batches_trained_cloud"):
        merged[key] = sum(rep.get(key) or 0 for rep in reports)
    merged["cloud_busy_s"] = round(sum(rep.get("cloud_busy_s") or 0 for rep in reports), 3)
    merged["runtime_s"] = max(rep.get("runtime_s") or 0 for rep in reports)
    merged["ranks"] = [rep["rank"] for rep in reports]
    merged.pop("rank", None)
    shared = dict(reports[0].get("shared_tail") or {})
    shared["edges"] = sorted(
        {(e["edge_id"], e["run_id"]) for rep in reports for e in rep["shared_tail"]["edges"]}
    )
    shared["edges"] = [{"edge_id": e, "run_id": r} for e, r in shared["edges"]]
    merged["shared_tail"] = shared
    return merged
