"""A fault-injecting TCP relay for testing the link against a bad line.

``FaultyRelay`` sits between an edge and a host: it forwards bytes both ways and, in the
directions asked for, flips bits, drops bytes, truncates chunks, and can cut every connection
for a while. Deterministic for a given seed (up to thread timing).
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class FaultPlan:
    """Per-chunk probabilities of each fault (a chunk is what one recv returned)."""

    flip: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    upstream: bool = True
    downstream: bool = False


@dataclass
class FaultCounts:
    """How many faults the relay injected."""

    flips: int = 0
    drops: int = 0
    truncations: int = 0
    cuts: int = 0


class FaultyRelay:
    """Listen on 127.0.0.1:<port> and relay every connection to ``target`` with faults."""

    def __init__(
        self, target: tuple[str, int], plan: FaultPlan, seed: int = 0, record: bool = False
    ) -> None:
        self.target = target
        self.plan = plan
        self.counts = FaultCounts()
        # With record=True every byte that crosses the relay is kept, per direction, as it was
        # put on the wire towards its destination (a wiretap for privacy tests).
        self.record = record
        self.captured = {"up": bytearray(), "down": bytearray()}
        self.errors: list[str] = []
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self._server.settimeout(0.1)
        self.address: tuple[str, int] = self._server.getsockname()
        self._closing = threading.Event()
        self._cut_until = 0.0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="relay")
        self._thread.start()

    @property
    def url(self) -> str:
        """The pyserial URL an edge connects to."""
        return f"socket://{self.address[0]}:{self.address[1]}"

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for ``seconds``."""
        self.counts.cuts += 1
        self._cut_until = time.monotonic() + seconds
        self._close_all()

    def close(self) -> None:
        """Stop relaying."""
        self._closing.set()
        self._server.close()
        self._close_all()
        self._thread.join(2.0)

    def _close_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listening socket closed
            if time.monotonic() < self._cut_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for src, dst, faulty, direction in (
                (client, upstream, self.plan.upstream, "up"),
                (upstream, client, self.plan.downstream, "down"),
            ):
                threading.Thread(
                    target=self._pump,
                    args=(src, dst, faulty, direction),
                    daemon=True,
                    name="relay-pump",
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, faulty: bool, direction: str) -> None:
        try:
            while not self._closing.is_set():
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if faulty:
                    data = self._damage(data)
                if self.record:
                    with self._lock:
                        self.captured[direction] += data
                dst.sendall(data)
        except (OSError, ValueError) as exc:  # one side closed: close both below
            self.errors.append(f"{direction}: {exc!r}")
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _damage(self, data: bytes) -> bytes:
        plan = self.plan
        with self._rng_lock:
            rng = self._rng
            buf = bytearray(data)
            if buf and rng.random() < plan.flip:
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
                self.counts.flips += 1
            if len(buf) > 1 and rng.random() < plan.drop:
                i = rng.randrange(len(buf))
                n = rng.randint(1, min(64, len(buf) - i))
                del buf[i : i + n]
                self.counts.drops += 1
            if len(buf) > 1 and rng.random() < plan.truncate:
                del buf[rng.randrange(len(buf)) :]
                self.counts.truncations += 1
            return bytes(buf)
