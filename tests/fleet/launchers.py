"""What the torchrun tests (test_ranks.py, test_nodes.py) share: a `hostctl serve --ranks`
launcher run as a user runs it, read and killed the same way, and edge processes to kill.

A launcher runs in a process group of its own (torchrun goes with it) and dies with pytest;
its stdout is read by a thread for the whole run, so a deadline holds on the ranks' listening
lines and the pipe never fills; `kill` reaches the launcher, torchrun and every rank (torchrun
starts each rank in a session of its own).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest


def die_with_pytest() -> None:
    """In a launcher's child, before exec: SIGKILL it if pytest dies (a killed run leaves no
    launcher; its torchrun and ranks follow it down, see host/cloud/ranks.py)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Launcher:
    """A running `hostctl serve ... --ranks`: `cmd` run in `tmp` with its stderr in `err_path`
    and its state in `state`; `name` says which launcher in a failure message."""

    def __init__(
        self, cmd: list[str], tmp: Path, state: Path, err_path: Path, env: dict, name: str
    ) -> None:
        self.tmp, self.state, self.err_path, self.name = tmp, state, err_path, name
        self.err = open(err_path, "w")  # noqa: SIM115 - closed in wait_done() / kill()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env=env,
            cwd=tmp,
            start_new_session=True,  # killpg reaches the launcher and torchrun
            preexec_fn=die_with_pytest,
        )
        self.ports: dict[int, int] = {}  # global rank -> its port
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ports(self, count: int, world: int, timeout: float) -> dict[int, int]:
        """Read `count` 'listening on tcp://H:P (rank r of `world`)' lines within `timeout`."""
        deadline = time.monotonic() + timeout
        while len(self.ports) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"{self.name} did not listen within {timeout:g} s\n{self.logs()}")
            assert line is not None, self.logs()
            self.out.append(line)
            found = re.search(r"listening on tcp://[\d.]+:(\d+) \(rank (\d+) of (\d+)\)", line)
            if found:
                assert int(found[3]) == world, line
                self.ports[int(found[2])] = int(found[1])
        return self.ports

    def logs(self) -> str:
        """The ends of the launcher's stderr and torchrun's log, for a failure message."""
        parts = []
        for path in (self.err_path, self.state / "ranks" / "torchrun.log"):
            if path.exists():
                parts.append(f"--- {self.name}: {path.name}\n{path.read_text()[-3000:]}")
        return "\n".join(parts)

    def rank_pids(self) -> list[int]:
        return [int(p.read_text()) for p in sorted((self.state / "ranks").glob("rank-*.pid"))]

    def wait_done(self, timeout: float) -> int:
        """The launcher's exit code, once it and every rank's hold on stdout are gone."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish within {timeout:g} s\n{self.logs()}")
        try:
            while (line := self.lines.get(timeout=30)) is not None:
                self.out.append(line)
        except queue.Empty:  # someone still holds the ranks' stdout: a rank outlived torchrun
            self.kill()
            pytest.fail(f"{self.name}: stdout still open 30 s after the launcher\n{self.logs()}")
        self.err.close()
        return rc

    def kill(self) -> None:
        """SIGKILL the launcher's group (launcher, torchrun) and every rank's."""
        pids = self.rank_pids() if (self.state / "ranks").is_dir() else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait()
        self.err.close()


class Edge(subprocess.Popen):
    """An `edge-runtime run` process that a test's fixture can kill."""

    def kill(self) -> None:
        if self.poll() is None:
            super().kill()
        self.wait()
