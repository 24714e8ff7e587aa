"""Peers that never authenticate (findings 9 and 10 of issue 17): refused with a typed ERROR,
counted by reason and logged with their address, dropped when idle, held to small frames, and
capped in number, while an honest edge trains beside them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, fast_config

from edge_runtime.link import EdgeLink, HandshakeRefused, HostListener
from edge_runtime.link.control import Error, Hello
from edge_runtime.link.framing import FrameDecoder, encode_frame
from edge_runtime.link.header import PROTOCOL_VERSION, Header, MsgType, decode_header
from edge_runtime.link.messages import decode_message, encode_message
from edge_runtime.train.messages import Batch

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def thread_errors() -> Iterator[list[BaseException]]:
    """Exceptions that escape any thread while the test runs (a traceback in the host)."""
    seen: list[BaseException] = []
    old = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)  # type: ignore[assignment]
    yield seen
    threading.excepthook = old


def _raw(addr: tuple[str, int]) -> socket.socket:
    return socket.create_connection(addr, timeout=10)


def _hello_frame(body: bytes) -> bytes:
    return encode_frame(Header(type=MsgType.HELLO, length=len(body)).pack() + body)


def _answer(sock: socket.socket) -> Error | None:
    """The ERROR the host sends before it closes, or None if it closes without one."""
    dec = FrameDecoder(1 << 16)
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not data:
            return None
        for body in dec.feed(data):
            header, payload = decode_header(body, 1 << 16)
            if header.type == MsgType.ERROR:
                err = decode_message(header, payload)
                assert isinstance(err, Error)
                return err


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _hello(edge_id: str = "e", run_id: str = "r") -> bytes:
    return Hello(PROTOCOL_VERSION, edge_id, run_id, BUNDLE, 1 << 20).encode()


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"[1, 2, 3]", "protocol", "malformed HELLO"),
        (b"\xff\xfe not utf-8", "protocol", "malformed HELLO"),
        (b'{"version": 2, "edge_id": ["x"]}', "protocol", "malformed HELLO"),
        (_hello(edge_id="caf\u00e9"), "identity", "not a valid id"),
        (_hello(edge_id="lab/pi"), "identity", "not a valid id"),
        (_hello(run_id="r" * 65), "identity", "not a valid id"),
        (_hello(edge_id="a b"), "identity", "not a valid id"),
    ],
)
def test_a_malformed_hello_gets_a_typed_error_and_is_counted(
    thread_errors: list[BaseException], body: bytes, code: str, says: str
) -> None:
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    try:
        addr = lst.serve_tcp("127.0.0.1", 0, Collector())
        with _raw(addr) as sock:
            sock.sendall(_hello_frame(body))
            err = _answer(sock)
        assert err is not None and err.code == code and says in err.message
        _wait(lambda: lst.refusals.counts.get(code) == 1)
        (refusal,) = list(lst.refusals)
        assert refusal.peer.startswith("127.0.0.1:")
    finally:
        lst.close()
    assert thread_errors == []


def test_a_huge_hello_is_dropped_unread_and_counted(thread_errors: list[BaseException]) -> None:
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    try:
        addr = lst.serve_tcp("127.0.0.1", 0, Collector())
        with _raw(addr) as sock:
            sock.sendall(_hello_frame(_hello(edge_id="x" * 100_000)))
            assert _answer(sock) is None  # closed: above handshake_frame before authentication
        _wait(lambda: lst.refusals.counts.get("oversize") == 1)
    finally:
        lst.close()
    assert thread_errors == []


def test_idle_and_flooding_peers_are_dropped_and_capped(tmp_path: Path) -> None:
    config = fast_config(handshake_timeout=1.5, max_handshakes=8)
    col = Collector()
    lst = HostListener(KEY, BUNDLE, config=config)
    addr = lst.serve_tcp("127.0.0.1", 0, col)
    peers = []
    try:
        for _ in range(6):  # idle: say nothing
            peers.append(_raw(addr))
        flood = [_raw(addr) for _ in range(2)]
        for sock in flood:  # a megabyte without a delimiter: never buffered past 4 KiB
            sock.sendall(b"\x01" * (1 << 20))
        _wait(lambda: lst._handshaking == 0 or lst.refusals.counts.get("oversize", 0) >= 2)
        extra = [_raw(addr) for _ in range(4)]  # beyond the cap, as soon as it is full
        for sock in flood + peers + extra:
            assert _answer(sock) is None  # each closed by the host
        _wait(lambda: lst.refusals.counts.get("idle", 0) >= 6)
        counts = lst.refusals.counts
        assert counts.get("oversize") == 2
        assert counts.get("idle", 0) + counts.get("busy", 0) >= 10
        assert lst._handshaking == 0
        # The honest edge gets in once the idle ones are gone, and trains.
        link = EdgeLink.connect(
            f"socket://{addr[0]}:{addr[1]}", key=KEY, bundle_sha256=BUNDLE, edge_id="good",
            run_id="r", spool_dir=tmp_path, config=config,
        )  # fmt: skip
        for i in range(3):
            link.send(Batch(0, i, np.arange(2), np.ones((2, 8), np.float32)))
        link.flush(20)
        assert [m.index for m in col.data()] == [0, 1, 2]
        link.close()
    finally:
        for sock in peers:
            sock.close()
        lst.close()


def test_the_handshake_cap_turns_the_next_peer_away_at_once() -> None:
    config = fast_config(handshake_timeout=5.0, max_handshakes=3)
    lst = HostListener(KEY, BUNDLE, config=config)
    addr = lst.serve_tcp("127.0.0.1", 0, Collector())
    held = [_raw(addr) for _ in range(3)]
    try:
        _wait(lambda: lst._handshaking == 3)
        start = time.monotonic()
        with _raw(addr) as late:
            assert _answer(late) is None
        assert time.monotonic() - start < 4.0  # not after the handshake timeout: at once
        assert lst.refusals.counts == {"busy": 1}
    finally:
        for sock in held:
            sock.close()
        lst.close()


def test_wrong_keys_are_counted_not_hoarded(tmp_path: Path) -> None:
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    addr = lst.serve_tcp("127.0.0.1", 0, Collector())
    url = f"socket://{addr[0]}:{addr[1]}"
    try:
        for i in range(60):
            with pytest.raises(HandshakeRefused):
                EdgeLink.connect(
                    url, key=b"wrong", bundle_sha256=BUNDLE, edge_id=f"thief{i}", run_id="r",
                    spool_dir=tmp_path / str(i), config=fast_config(),
                )  # fmt: skip
        _wait(lambda: lst.refusals.counts.get("auth") == 60)
        assert len(lst.refusals) <= 32  # the last few kept, the rest counted
        assert lst.refusals.as_dict() == {"total": 60, "by_reason": {"auth": 60}}
    finally:
        lst.close()


def test_an_edge_with_an_invalid_id_is_told_why(tmp_path: Path) -> None:
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    addr = lst.serve_tcp("127.0.0.1", 0, Collector())
    try:
        with pytest.raises(HandshakeRefused) as info:
            EdgeLink.connect(
                f"socket://{addr[0]}:{addr[1]}", key=KEY, bundle_sha256=BUNDLE,
                edge_id="../../etc", run_id="r", spool_dir=tmp_path, config=fast_config(),
            )  # fmt: skip
        assert info.value.code == "identity" and "'../../etc'" in info.value.message
    finally:
        lst.close()


def test_data_before_hello_is_refused_and_counted() -> None:
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    addr = lst.serve_tcp("127.0.0.1", 0, Collector())
    try:
        with _raw(addr) as sock:
            batch = Batch(0, 0, np.arange(2), np.ones((2, 4), np.float32))
            sock.sendall(encode_frame(encode_message(batch, seq=1)))
            err = _answer(sock)
        assert err is not None and err.code == "protocol" and "expected HELLO" in err.message
        _wait(lambda: lst.refusals.counts.get("protocol") == 1)
    finally:
        lst.close()
