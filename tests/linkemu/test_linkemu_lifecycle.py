"""Closing, resets, stop() and cut(): the relay passes closes on and leaks no thread."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
from linkemu_servers import IO_TIMEOUT_S

from host.linkemu import LinkSpec, ShapedRelay, shaped

SLOW = LinkSpec("slow", 1e6, 1e6, 0.020)


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def relay_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("linkemu-")]


def is_closed(sock: socket.socket, timeout: float = 2.0) -> bool:
    """True once the peer has closed (EOF) or reset; data before that is read and dropped."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def is_refused(address: tuple[str, int]) -> bool:
    """True when a connection to ``address`` is reset at once (the kernel accepts, then the relay
    resets it: the reset may come while connect() is still returning)."""
    try:
        sock = socket.create_connection(address, timeout=IO_TIMEOUT_S)
    except (ConnectionResetError, ConnectionRefusedError):
        return True
    with sock:
        return is_closed(sock)


def connect(
    relay: ShapedRelay, accepted: queue.Queue[socket.socket]
) -> tuple[socket.socket, socket.socket]:
    """A client through the relay and the host's end of it."""
    client = socket.create_connection(relay.address, timeout=IO_TIMEOUT_S)
    return client, accepted.get(timeout=IO_TIMEOUT_S)


def test_client_close_reaches_the_host_and_ends_the_connection(holder) -> None:
    address, accepted = holder
    with ShapedRelay(address, SLOW) as relay:
        client, host = connect(relay, accepted)
        client.sendall(b"last words")
        client.close()
        host.settimeout(IO_TIMEOUT_S)
        assert host.recv(64) == b"last words"
        assert is_closed(host)
        host.close()
        assert wait_until(lambda: relay.stats["active"] == 0)
        assert wait_until(lambda: relay_threads() == ["linkemu-accept"])


def test_host_close_reaches_the_client(holder) -> None:
    address, accepted = holder
    with ShapedRelay(address, SLOW) as relay:
        client, host = connect(relay, accepted)
        with client:
            host.sendall(b"bye")
            host.close()
            client.settimeout(IO_TIMEOUT_S)
            assert client.recv(64) == b"bye"
            assert is_closed(client)
        assert wait_until(lambda: relay.stats["active"] == 0)


def test_half_close_lets_the_host_answer(holder) -> None:
    address, accepted = holder
    with ShapedRelay(address, SLOW) as relay:
        client, host = connect(relay, accepted)
        with client, host:
            client.sendall(b"question")
            client.shutdown(socket.SHUT_WR)
            host.settimeout(IO_TIMEOUT_S)
            assert host.recv(64) == b"question"
            assert host.recv(64) == b""  # the FIN came through
            host.sendall(b"answer")
            host.shutdown(socket.SHUT_WR)
            client.settimeout(IO_TIMEOUT_S)
            assert client.recv(64) == b"answer"
            assert client.recv(64) == b""
        assert wait_until(lambda: relay.stats["active"] == 0)
    assert relay.errors == type(relay.errors)()  # nothing went wrong


def test_host_reset_drops_the_client_and_is_recorded(holder) -> None:
    address, accepted = holder
    with ShapedRelay(address, SLOW) as relay:
        client, host = connect(relay, accepted)
        with client:
            client.sendall(b"x")
            host.settimeout(IO_TIMEOUT_S)
            assert host.recv(1) == b"x"
            host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            host.close()
            assert is_closed(client)
        assert wait_until(lambda: relay.stats["active"] == 0)
        assert any("ConnectionResetError" in e for e in relay.errors), list(relay.errors)


def test_stop_mid_transfer_ends_every_thread_quickly(holder) -> None:
    address, accepted = holder
    relay = ShapedRelay(address, LinkSpec("slow", 256e3, 256e3, 0.200))
    relay.start()
    clients = []
    for _ in range(3):
        client, _host = connect(relay, accepted)
        clients.append(client)
        # Far more than the link moves before stop(): pumps are asleep in the bucket.
        threading.Thread(
            target=lambda c=client: is_closed(c, 0.1) or c.sendall(b"z" * 2_000_000),
            daemon=True,
        ).start()
    time.sleep(0.3)
    assert len(relay_threads()) == 1 + 3 * 4
    started = time.monotonic()
    relay.stop()
    assert time.monotonic() - started < 1.0
    assert relay_threads() == []
    for client in clients:
        assert is_closed(client)
        client.close()


def test_cut_drops_connections_and_refuses_for_the_window(echo) -> None:
    with shaped(echo, "10mbit/10ms") as relay:
        before = socket.create_connection(relay.address, timeout=IO_TIMEOUT_S)
        before.sendall(b"hi")
        assert before.recv(2) == b"hi"
        relay.cut(0.6)
        cut_at = time.monotonic()
        assert is_closed(before)
        before.close()
        assert is_refused(relay.address)
        assert wait_until(lambda: relay.stats["active"] == 0)
        time.sleep(max(0.0, cut_at + 0.65 - time.monotonic()))
        with socket.create_connection(relay.address, timeout=IO_TIMEOUT_S) as after:
            after.sendall(b"back")
            assert after.recv(4) == b"back"
        stats = relay.stats
    assert (stats["cuts"], stats["refused"], stats["connections"]) == (1, 1, 2)


def test_unreachable_target_resets_the_client_and_is_recorded() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead = placeholder.getsockname()[:2]  # nothing listens here once it is closed
    with shaped(dead, "4g") as relay:
        assert is_refused(relay.address)
        assert wait_until(lambda: len(relay.errors) == 1)
        assert "connect to" in relay.errors[0]
        assert relay.stats["connections"] == 0


def test_start_twice_is_an_error_and_shaped_does_not_start(echo) -> None:
    relay = shaped(echo, "3g")
    assert relay.link.name == "3g"
    assert relay_threads() == []
    relay.start()
    try:
        with pytest.raises(RuntimeError):
            relay.start()
    finally:
        relay.stop()
    relay.stop()  # idempotent
    assert relay_threads() == []
