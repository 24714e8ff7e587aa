"""Refusals name what differs on both sides; the host keeps serving the good edges."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, fast_config

from edge_runtime.link import AuthError, EdgeLink, HandshakeRefused, HostListener
from edge_runtime.link.control import Error, Hello
from edge_runtime.link.framing import FrameDecoder, encode_frame
from edge_runtime.link.handshake import edge_handshake
from edge_runtime.link.header import PROTOCOL_VERSION, Header, MsgType, decode_header
from edge_runtime.link.messages import decode_message, encode_message
from edge_runtime.link.stream import FrameIO, LinkStats
from edge_runtime.link.transports import SocketTransport
from edge_runtime.train.messages import Batch

pytestmark = pytest.mark.timeout(30)


def _connect(
    url: str, spool: Path, key: bytes = KEY, bundle: str = BUNDLE, edge: str = "e"
) -> EdgeLink:
    return EdgeLink.connect(
        url, key=key, bundle_sha256=bundle, edge_id=edge, run_id="r", spool_dir=spool,
        config=fast_config(),
    )  # fmt: skip


def _refusal_codes(listener: HostListener) -> list[str]:
    """The host records a refusal just after sending its ERROR: give it a moment."""
    deadline = time.monotonic() + 5
    while not listener.refusals and time.monotonic() < deadline:
        time.sleep(0.01)
    return [r.code for r in listener.refusals]


def _raw(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=5)


def _read_error(sock: socket.socket) -> Error:
    dec = FrameDecoder(1 << 16)
    while True:
        data = sock.recv(4096)
        assert data, "closed without an ERROR"
        for body in dec.feed(data):
            header, payload = decode_header(body, 1 << 16)
            if header.type == MsgType.ERROR:
                err = decode_message(header, payload)
                assert isinstance(err, Error)
                return err


@pytest.mark.parametrize(
    ("key", "bundle", "code", "names"),
    [(b"wrong-key", BUNDLE, "auth", "key"), (KEY, "cd" * 32, "bundle", "bundle")],
)
def test_refused_while_a_good_edge_keeps_streaming(
    listener: HostListener, tmp_path: Path, key: bytes, bundle: str, code: str, names: str
) -> None:
    col = Collector()
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    url = f"socket://{host}:{port}"
    good = _connect(url, tmp_path / "good", edge="good")
    good.send(Batch(0, 0, np.arange(2), np.zeros((2, 4), np.float32)))
    t0 = time.monotonic()
    with pytest.raises(HandshakeRefused) as info:
        _connect(url, tmp_path / "bad", key=key, bundle=bundle, edge="bad")
    assert time.monotonic() - t0 < 5, "a refusal must not be retried"
    assert info.value.code == code and names in info.value.message
    if code == "auth":
        assert isinstance(info.value, AuthError)
    assert _refusal_codes(listener) == [code]
    good.send(Batch(0, 1, np.arange(2), np.zeros((2, 4), np.float32)))
    good.flush(5)
    assert [m.index for m in col.data()] == [0, 1]
    assert all(s.edge_id == "good" for s in col.sessions)
    good.close()


def test_wrong_version_in_header_is_refused(listener: HostListener) -> None:
    host, port = listener.serve_tcp("127.0.0.1", 0, Collector())
    payload = Hello(PROTOCOL_VERSION, "e", "r", BUNDLE, 1 << 20).encode()
    header = Header(type=MsgType.HELLO, length=len(payload), version=PROTOCOL_VERSION + 1)
    with _raw(host, port) as sock:
        sock.sendall(encode_frame(header.pack() + payload))
        err = _read_error(sock)
    assert err.code == "version" and f"edge speaks {PROTOCOL_VERSION + 1}" in err.message
    assert _refusal_codes(listener) == ["version"]


def test_wrong_version_in_hello_raises_on_the_edge(listener: HostListener) -> None:
    host, port = listener.serve_tcp("127.0.0.1", 0, Collector())
    with _raw(host, port) as sock:
        io = FrameIO(SocketTransport(sock, 0.02), 1 << 20, LinkStats())
        with pytest.raises(HandshakeRefused) as info:
            edge_handshake(io, Hello(9, "e", "r", BUNDLE, 1 << 20), KEY, 5.0)
    assert info.value.code == "version" and "9" in info.value.message


def test_data_before_welcome_is_refused_and_never_decoded(listener: HostListener) -> None:
    col = Collector()
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    batch = Batch(0, 0, np.arange(2), np.zeros((2, 4), np.float32))
    with _raw(host, port) as sock:
        sock.sendall(encode_frame(encode_message(batch, seq=1)))
        err = _read_error(sock)
        assert err.code == "protocol"
        sock.settimeout(5)
        assert sock.recv(4096) == b""  # and the connection is closed
    assert col.sessions == [] and col.messages == []


def test_a_host_that_fails_to_resume_an_edge_refuses_it_in_one_line(tmp_path: Path) -> None:
    """The application's resume callback failing in an unforeseen way (a bug, a state it
    cannot read) refuses that edge with "state", naming the failure, and the host serves on;
    before, the line's thread died with a traceback while the edge retried blind."""

    def resume_for(edge_id: str, run_id: str) -> tuple[int, dict]:
        if edge_id == "broken":
            raise RuntimeError("size mismatch for tail.fc.weight")
        return 0, {}

    lst = HostListener(KEY, BUNDLE, config=fast_config(), resume_for=resume_for)
    try:
        host, port = lst.serve_tcp("127.0.0.1", 0, Collector())
        with pytest.raises(HandshakeRefused) as info:
            _connect(f"socket://{host}:{port}", tmp_path / "a", edge="broken")
        assert info.value.code == "state"
        assert "RuntimeError: size mismatch for tail.fc.weight" in str(info.value)
        assert _refusal_codes(lst) == ["state"]
        good = _connect(f"socket://{host}:{port}", tmp_path / "b", edge="good")
        good.close()
    finally:
        lst.close()
