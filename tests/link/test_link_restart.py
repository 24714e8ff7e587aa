"""A receiver killed with SIGKILL and restarted from its own cursor: nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, fast_config

from edge_runtime.link import EdgeLink, HostListener
from edge_runtime.link.errors import SpoolError
from edge_runtime.link.spool import Spool
from edge_runtime.train.messages import Batch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_host(port: int, record: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{HERE}")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "host_proc.py"), str(port), str(record)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"READY"
    return proc


def _lines(record: Path) -> int:
    return record.read_bytes().count(b"\n") if record.exists() else 0


@pytest.mark.timeout(60)
def test_host_sigkill_and_restart(tmp_path: Path) -> None:
    port, record, n = _free_port(), tmp_path / "record.txt", 400
    proc = _start_host(port, record)
    procs = [proc]
    try:
        link = EdgeLink.connect(
            f"socket://127.0.0.1:{port}",
            key=KEY,
            bundle_sha256=BUNDLE,
            edge_id="edge0",
            run_id="restart",
            spool_dir=tmp_path / "spool",
            config=fast_config(reconnect_timeout=20.0),
        )

        def send_all() -> None:
            x = np.ones((4, 64), np.float32)
            for i in range(n):
                link.send(Batch(0, i, np.arange(4), x, "fp32"))

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        for threshold in (100, 250):
            deadline = time.monotonic() + 20
            while _lines(record) < threshold and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.pending > 0, "the kill should find unconsumed batches in the spool"
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(5)
            procs.append(_start_host(port, record))
        sender.join(30)
        link.flush(30)
        assert link.stats["reconnects"] >= 2
        link.close()
    finally:
        for p in procs:
            p.kill()
            p.wait(5)
    rows = [tuple(map(int, line.split())) for line in record.read_text().splitlines()]
    assert [index for _seq, index in rows] == list(range(n)), "lost or doubled batches"
    assert [seq for seq, _index in rows] == list(range(1, n + 1))


@pytest.mark.timeout(60)
def test_edge_sigkill_and_restart_from_its_spool(tmp_path: Path) -> None:
    col = Collector(delay=0.002)
    listener = HostListener(KEY, BUNDLE, config=fast_config())
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{HERE}")
    args = [sys.executable, str(HERE / "edge_proc.py"), f"socket://{host}:{port}"]
    args += [str(tmp_path / "spool"), "300"]
    try:
        first = subprocess.Popen(args, stdout=subprocess.PIPE, env=env)
        col.wait_for(100, 30)
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        second = subprocess.run(args, stdout=subprocess.PIPE, env=env, timeout=40, check=True)
        lines = second.stdout.decode().split()
        assert lines[0] == "START" and int(lines[1]) >= 100 and lines[-1] == "DONE"
    finally:
        listener.close()
    assert [m.index for m in col.data()] == list(range(300)), "lost or doubled batches"
    assert [m.seq for m in col.data()] == list(range(1, 301))


def test_spool_survives_a_crash_and_keeps_numbering(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=10, max_bytes=1 << 20)
    for i in range(5):
        assert spool.append(16, bytes([i]) * 10) == i + 1
    spool.drop_upto(2)
    (tmp_path / "0000000009.msg.tmp").write_bytes(b"half a write")  # killed mid-write
    del spool  # no close: a crash
    again = Spool(tmp_path, max_messages=10, max_bytes=1 << 20)
    assert again.seqs() == [3, 4, 5] and again.next_seq == 6
    assert again.get(4) == (16, bytes([3]) * 10)
    assert not list(tmp_path.glob("*.tmp"))
    again.drop_upto(5)
    assert Spool(tmp_path, 10, 1 << 20).next_seq == 6  # numbering never goes back


def test_spool_bounds(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=2, max_bytes=100, fsync=False)
    assert spool.has_room(50)
    spool.append(16, b"x" * 50)
    assert not spool.has_room(60)  # bytes
    spool.append(16, b"x")
    assert not spool.has_room(1)  # count
    with pytest.raises(SpoolError):
        spool.has_room(1000)
