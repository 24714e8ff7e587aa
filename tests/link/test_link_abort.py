"""A host that must stop mid-session (its disk, a tail that fails) ends the edge's link at once.

`HostSession.abort` writes one final ERROR and closes the line so that the ERROR survives; the
edge's link fails with `PeerStopped` and the host's words instead of reconnecting to nobody for
its reconnect timeout. Over TCP loopback and over a pty pair (a serial line), with the edge
still streaming batches when the host stops. (That a plain close would destroy the ERROR with
an RST is shown end to end, where it happened: tests/e2e/test_e2e_user_model.py.)
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, PtyBridge, fast_config

from edge_runtime.link import EdgeLink, HostListener, HostSession, LinkClosed, PeerStopped
from edge_runtime.train.messages import Batch

pytestmark = pytest.mark.timeout(60)
WHY = "the host stopped: RuntimeError: the tail broke"


class Aborter:
    """A host application that takes three batches, never acknowledges them, then stops."""

    def __init__(self) -> None:
        self.taken = 0
        self.done = threading.Event()

    def __call__(self, session: HostSession) -> None:
        try:
            while self.taken < 3:
                if session.recv(0.5) is not None:
                    self.taken += 1
        except LinkClosed:
            return
        session.abort("state", WHY)
        self.done.set()


def _stream_until_stopped(url: str, spool: Path) -> PeerStopped:
    """Send batches until the link fails; the failure must be the host's final word."""
    # A reconnect budget of 15 s: without the ERROR the link would fail after it with
    # "gave up", a plain LinkError, and the assertion below names the difference.
    link = EdgeLink.connect(
        url, key=KEY, bundle_sha256=BUNDLE, edge_id="e", run_id="r", spool_dir=spool,
        config=fast_config(window=8),
    )  # fmt: skip
    try:
        with pytest.raises(PeerStopped) as caught:
            for i in range(10_000):
                link.send(Batch(0, i, np.arange(4), np.zeros((4, 2048), np.float32)))
        return caught.value
    finally:
        link.close()


def test_a_host_that_stops_over_tcp_ends_the_edge_with_its_words(tmp_path: Path) -> None:
    host_app = Aborter()
    listener = HostListener(KEY, BUNDLE, config=fast_config())
    try:
        host, port = listener.serve_tcp("127.0.0.1", 0, host_app)
        stopped = _stream_until_stopped(f"socket://{host}:{port}", tmp_path)
    finally:
        listener.close()
    assert host_app.done.is_set()
    assert stopped.code == "state" and str(stopped) == WHY


def test_a_host_that_stops_on_a_serial_line_ends_the_edge_with_its_words(
    pty_bridge: PtyBridge, tmp_path: Path
) -> None:
    host_app = Aborter()
    listener = HostListener(KEY, BUNDLE, config=fast_config())
    try:
        listener.serve_serial(pty_bridge.paths[1], host_app)
        stopped = _stream_until_stopped(pty_bridge.paths[0], tmp_path)
    finally:
        listener.close()
    assert host_app.done.is_set()
    assert stopped.code == "state" and str(stopped) == WHY
