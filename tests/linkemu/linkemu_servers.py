"""Helpers for the relay tests: a small TCP server, what a sink received, read to EOF.

A module of its own (not conftest) so test files import it by a name no other test dir uses."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

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
