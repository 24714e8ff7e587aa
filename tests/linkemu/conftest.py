"""Small TCP servers on 127.0.0.1 for the relay tests: sink, source, echo, and a holder."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from linkemu_servers import IO_TIMEOUT_S, Received, TcpServer, read_all


@pytest.fixture
def sink() -> Iterator[tuple[tuple[str, int], queue.Queue[Received]]]:
    """A server that reads each connection to EOF and reports what it got."""
    results: queue.Queue[Received] = queue.Queue()

    def handle(sock: socket.socket) -> None:
        nbytes, sha = read_all(sock)
        results.put(Received(nbytes, sha, time.monotonic()))

    server = TcpServer(handle, "sink")
    yield server.address, results
    server.close()


@pytest.fixture
def source() -> Iterator[tuple[tuple[str, int], bytes]]:
    """A server that sends a fixed 150 kB payload on each connection, then closes."""
    payload = bytes(range(256)) * 600

    def handle(sock: socket.socket) -> None:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            sock.recv(1)  # wait for the client's close before closing ours

    server = TcpServer(handle, "source")
    yield server.address, payload
    server.close()


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A server that echoes until EOF."""

    def handle(sock: socket.socket) -> None:
        while data := sock.recv(65536):
            sock.sendall(data)

    server = TcpServer(handle, "echo")
    yield server.address
    server.close()


@pytest.fixture
def holder() -> Iterator[tuple[tuple[str, int], queue.Queue[socket.socket]]]:
    """A server that hands each accepted socket to the test and keeps it open until told."""
    accepted: queue.Queue[socket.socket] = queue.Queue()
    release = threading.Event()

    def handle(sock: socket.socket) -> None:
        accepted.put(sock)
        release.wait(IO_TIMEOUT_S)

    server = TcpServer(handle, "holder")
    yield server.address, accepted
    release.set()
    server.close()
