"""Harness for end-to-end runs: `hostctl serve` and `edge-runtime run` as real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cloud:
    """A running `hostctl serve`."""

    proc: subprocess.Popen
    report: Path
    metrics: Path
    log: Path
    listening: str = ""

    @property
    def port(self) -> int:
        return int(self.listening.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def rows(self) -> int:
        """Batches the tail has trained so far (lines in its metrics CSV)."""
        if not self.metrics.exists():
            return 0
        return max(0, len(self.metrics.read_text().splitlines()) - 1)

    def finish(self, timeout: float = 240) -> dict:
        rc = self.proc.wait(timeout)
        assert rc == 0, self.log.read_text()[-3000:]
        return json.loads(self.report.read_text())


def start_cloud(
    bundle: Path,
    workdir: Path,
    *args: str,
    listen: str | None = None,
    serial: str | None = None,
    tag: str = "cloud",
) -> Cloud:
    """Start the cloud trainer; waits for its 'listening on' line."""
    log = workdir / f"{tag}.log"
    where = ["--serial", serial] if serial else ["--listen", listen or "tcp://127.0.0.1:0"]
    cmd = [
        sys.executable,
        "-m",
        "host.cli",
        "serve",
        "--bundle",
        str(bundle),
        *where,
        "--state-dir",
        str(workdir / "cloud-state"),
        "--report",
        str(workdir / f"{tag}.json"),
        "--metrics-csv",
        str(workdir / "cloud-metrics.csv"),
        "--exit-when-done",
        *args,
    ]
    with open(log, "w") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, cwd=workdir
        )
    cloud = Cloud(proc, workdir / f"{tag}.json", workdir / "cloud-metrics.csv", log)
    line = proc.stdout.readline()  # "listening on tcp://127.0.0.1:PORT"
    assert line.startswith("listening on"), log.read_text()
    cloud.listening = line.strip()
    return cloud


def edge_cmd(bundle: Path, url: str, workdir: Path, *args: str, tag: str = "edge") -> list[str]:
    return [
        sys.executable,
        "-m",
        "edge_runtime.cli",
        "run",
        "--bundle",
        str(bundle / "edge"),
        "--connect",
        url,
        "--work-dir",
        str(workdir / "edge-work"),
        "--edge-id",
        "board0",
        "--report",
        str(workdir / f"{tag}.json"),
        *args,
    ]


def spawn_edge(
    bundle: Path, url: str, workdir: Path, *args: str, stderr: int = subprocess.PIPE
) -> subprocess.Popen:
    """`edge-runtime run` in the background (stdout dropped, stderr as text or dropped), for a
    test that signals or kills it mid-run."""
    return subprocess.Popen(
        edge_cmd(bundle, url, workdir, *args),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env=ENV,
        cwd=workdir,
    )


def run_edge(
    bundle: Path, url: str, workdir: Path, *args: str, timeout: float = 240, tag: str = "edge"
) -> dict:
    out = subprocess.run(
        edge_cmd(bundle, url, workdir, *args, tag=tag),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((workdir / f"{tag}.json").read_text())


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def expected_ids(train_samples: int, batch_size: int, epochs: int) -> list[list[int]]:
    per_epoch = -(-train_samples // batch_size)
    return [[e, i] for e in range(epochs) for i in range(per_epoch)]
