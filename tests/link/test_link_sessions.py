"""End to end over TCP loopback and a pty pair: delivery, back-pressure, resume, BYE."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, PtyBridge, fast_config

from edge_runtime.link import EdgeLink, FrameError, HostListener, LinkTimeout
from edge_runtime.link.control import Bye
from edge_runtime.train.messages import Batch, EpochEnd, Metrics

pytestmark = pytest.mark.timeout(30)


def _connect(url: str, spool: Path, **cfg: object) -> EdgeLink:
    return EdgeLink.connect(
        url,
        key=KEY,
        bundle_sha256=BUNDLE,
        edge_id="edge0",
        run_id="run1",
        spool_dir=spool,
        config=fast_config(**cfg),
    )


def _batch(i: int, size: int = 64) -> Batch:
    x = np.full((2, size // 8), i, dtype=np.float32)
    return Batch(0, i, np.array([i % 10, (i + 1) % 10]), x, "fp32")


def _indices(col: Collector) -> list[int]:
    return [m.index for m in col.data() if isinstance(m, Batch)]


def test_tcp_round_trip_both_ways(listener: HostListener, tmp_path: Path) -> None:
    col = Collector()
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    link = _connect(f"socket://{host}:{port}", tmp_path)
    seqs = [link.send(_batch(i)) for i in range(40)]
    link.send(EpochEnd(0, {"exit_acc": 0.5}))
    link.flush(10)
    assert seqs == list(range(1, 41))
    assert _indices(col) == list(range(40))
    last = col.data()[-1]
    assert isinstance(last, EpochEnd) and last.metrics == {"exit_acc": 0.5}
    session = col.sessions[0]
    assert (session.edge_id, session.run_id) == ("edge0", "run1")
    session.send(Metrics({"tail_acc": 0.9}))
    reply = link.poll(5.0)
    assert isinstance(reply, Metrics) and reply.data == {"tail_acc": 0.9}
    stats = link.stats
    assert stats["frames_sent"] >= 41 and stats["bytes_up"] > stats["payload_bytes_up"] > 0
    assert link.pending == 0
    link.close("done")
    deadline = time.monotonic() + 5
    while not any(isinstance(m, Bye) for m in col.messages) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(isinstance(m, Bye) and m.reason == "done" for m in col.messages)


def test_pty_pair_round_trip(pty_bridge: PtyBridge, tmp_path: Path) -> None:
    col = Collector()
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    try:
        lst.serve_serial(pty_bridge.paths[1], col)
        link = _connect(pty_bridge.paths[0], tmp_path)
        for i in range(30):
            link.send(_batch(i, 4096))
        link.flush(15)
        assert _indices(col) == list(range(30))
        link.close()
        # The serial host takes a fresh HELLO at any time: a restarted edge resumes.
        link2 = _connect(pty_bridge.paths[0], tmp_path)
        link2.send(_batch(30))
        link2.flush(10)
        assert _indices(col) == list(range(31))
        link2.close()
    finally:
        lst.close()


def test_back_pressure_blocks_until_consumed(listener: HostListener, tmp_path: Path) -> None:
    gate = threading.Event()
    col = Collector(consume=False)
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    link = _connect(f"socket://{host}:{port}", tmp_path, spool_max_messages=5, window=4)
    for i in range(5):
        link.send(_batch(i))
    with pytest.raises(LinkTimeout):
        link.send(_batch(5), timeout=0.5)  # spool full: nothing consumed yet
    col.wait_for(5, 5)

    def consume_later() -> None:
        gate.wait(5)
        col.sessions[0].consumed(5)

    threading.Thread(target=consume_later, daemon=True).start()
    gate.set()
    assert link.send(_batch(5), timeout=5) == 6
    link.close()


def test_reconnect_resumes_without_duplicates(listener: HostListener, tmp_path: Path) -> None:
    col = Collector(consume=False)
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    url = f"socket://{host}:{port}"
    link = _connect(url, tmp_path)
    for i in range(10):
        link.send(_batch(i))
    col.wait_for(10, 5)
    col.sessions[0].consumed(4)
    link._transport.close()  # the line drops under the edge (test-only reach-in)
    for i in range(10, 15):
        link.send(_batch(i))
    col.wait_for(15, 10)
    deadline = time.monotonic() + 5
    while link.stats["reconnects"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert link.stats["reconnects"] >= 1
    assert _indices(col) == list(range(15))
    col.sessions[-1].consumed(15)
    link.flush(5)
    link.close()


def test_message_above_max_frame_is_refused(listener: HostListener, tmp_path: Path) -> None:
    host, port = listener.serve_tcp("127.0.0.1", 0, Collector())
    link = _connect(f"socket://{host}:{port}", tmp_path, max_frame=4096)
    with pytest.raises(FrameError, match="exceeds max_frame"):
        link.send(_batch(0, 8192))
    assert link.pending == 0
    link.send(_batch(1, 256))
    link.flush(5)
    link.close()
