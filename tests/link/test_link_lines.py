"""The host's two kinds of line: a TCP connection ends with its peer, a serial line outlives it."""

from __future__ import annotations

import time
from pathlib import Path
from socket import create_connection

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, PtyBridge, fast_config

from edge_runtime.link import EdgeLink, HandshakeRefused, HostListener
from edge_runtime.link.control import Error, Hello
from edge_runtime.link.handshake import edge_handshake
from edge_runtime.link.header import MsgType
from edge_runtime.link.messages import decode_message
from edge_runtime.link.stream import FrameIO, LinkStats
from edge_runtime.link.transports import SocketTransport, open_url
from edge_runtime.train.messages import Batch

pytestmark = pytest.mark.timeout(60)
MALFORMED_HELLO = b'{"version": "one", "edge_id": "e"}'


def _error(io: FrameIO) -> Error | None:
    """The next ERROR from the host, None if the line closed or 5 s passed without one."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        frame = io.read_frame(deadline)
        if frame is not None and frame[0].type == MsgType.ERROR:
            err = decode_message(*frame)
            assert isinstance(err, Error)
            return err
    return None


def _batch(i: int) -> Batch:
    return Batch(0, i, np.arange(2), np.zeros((2, 8), np.float32))


def _good_edge(url: str, spool: Path) -> EdgeLink:
    return EdgeLink.connect(
        url, key=KEY, bundle_sha256=BUNDLE, edge_id="good", run_id="r", spool_dir=spool,
        config=fast_config(),
    )  # fmt: skip


def test_a_malformed_hello_over_tcp_gets_an_error_and_the_host_serves_on(
    listener: HostListener, tmp_path: Path
) -> None:
    col = Collector()
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    with create_connection((host, port), timeout=5) as sock:
        io = FrameIO(SocketTransport(sock, 0.05), 1 << 20, LinkStats())
        io.write(MsgType.HELLO, MALFORMED_HELLO)
        err = _error(io)
        assert err is not None and err.code == "protocol" and "HELLO.version" in err.message
    link = _good_edge(f"socket://{host}:{port}", tmp_path)
    link.send(_batch(0))
    link.flush(10)
    assert [m.index for m in col.data()] == [0]
    link.close()


def test_a_serial_line_outlives_garbage_a_malformed_hello_and_a_wrong_key(
    pty_bridge: PtyBridge, tmp_path: Path
) -> None:
    col = Collector()
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    try:
        lst.serve_serial(pty_bridge.paths[1], col)
        transport = open_url(pty_bridge.paths[0], 115200, 0.05)
        io = FrameIO(transport, 1 << 20, LinkStats())
        io.write(MsgType.BATCH, _batch(0).encode(), seq=1)  # data before any HELLO
        err = _error(io)
        assert err is not None and err.code == "protocol" and "expected HELLO" in err.message
        io.write(MsgType.HELLO, MALFORMED_HELLO)
        err = _error(io)
        assert err is not None and err.code == "protocol" and "malformed HELLO" in err.message
        hello = Hello(1, "bad", "r", BUNDLE, 1 << 20)
        with pytest.raises(HandshakeRefused) as info:
            edge_handshake(io, hello, b"wrong-key", 5.0)
        assert info.value.code == "auth"
        transport.close()
        # The same line still takes an edge, and its data arrives.
        link = _good_edge(pty_bridge.paths[0], tmp_path)
        for i in range(3):
            link.send(_batch(i))
        link.flush(10)
        assert [m.index for m in col.data()] == [0, 1, 2]
        assert [r.code for r in lst.refusals] == ["auth"]
        assert [s.edge_id for s in col.sessions] == ["good"]
        link.close()
    finally:
        lst.close()
