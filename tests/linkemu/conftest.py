"""Small TCP servers on 127.0.0.1 for the relay tests: sink, source, echo, and a holder."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

IO_TIMEOUT_S = 10.0  # no test socket blocks longer than this


@dataclass
class Received:
    """What a sink connection got: byte count, digest, and when the last byte came."""

    nbytes: int
    sha256: str
    last_at: float


class TcpServer:
    """Accept on 127.0.0.1:<free port>; run ``handler(sock)`` on each connection in a thread."""

    def __init__(self, handler: Callable[[socket.socket], None], name: str) -> None:
        self._handler = handler
        self._name = name
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name=f"{name}-accept")
        self._accept.start()

    def _accept_loop(self) -> None:
        with self._listener:
            while not self._stop.is_set():
                try:
                    sock, _ = self._listener.accept()
                except TimeoutError:
                    continue
                sock.settimeout(IO_TIMEOUT_S)
                thread = threading.Thread(target=self._serve, args=(sock,), name=self._name)
                self._threads.append(thread)
                thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, contextlib.suppress(OSError):  # a peer reset ends the handler, nothing more
            self._handler(sock)

    def close(self) -> None:
        self._stop.set()
        self._accept.join(2.0)
        for thread in self._threads:
            thread.join(IO_TIMEOUT_S)


def read_all(sock: socket.socket) -> tuple[int, str]:
    """Read to EOF; return the byte count and sha256."""
    digest = hashlib.sha256()
    total = 0
    while chunk := sock.recv(65536):
        digest.update(chunk)
        total += len(chunk)
    return total, digest.hexdigest()


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
