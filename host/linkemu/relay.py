"""A TCP relay between an edge and a host, with pluggable impairments (shape, damage, tap).

The edge connects to the relay; the relay connects to the host and moves bytes both ways. Up is
edge -> host (the relay's clients are edges), down is host -> edge. Each direction of each
connection has a reader (recv a chunk, pass it through the impairments in order) and a
deliverer (a delay line that hands each chunk to the other socket when it is due). What the
line does to the bytes is the impairments' business: ``Shape`` (shaper.py) paces and delays
them, ``Damage`` (damage.py) corrupts them, ``Tap`` (tap.py) records them. With none, the relay
is a plain TCP proxy.

A FIN is passed on as a FIN (after the data in flight), so closing either end closes the other.
An error or a reset on either side drops both sockets. ``cut`` drops every connection and
refuses new ones for a while: a link that goes away.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import socket
import struct
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")

DEFAULT_CHUNK = 65536  # bytes a reader takes per recv unless an impairment wants less
DEFAULT_BUFFER = 2**20  # bytes a delay line may hold unless an impairment wants more
_COALESCE = 256 * 1024  # most bytes a delay line hands to one sendall
_STOP_JOIN_S = 3.0
_CONNECT_TIMEOUT_S = 3.0
_ACCEPT_POLL_S = 0.25  # how often the accept loop looks at the stop flag
_EOF = None  # marks a FIN in a delay line


class Impairment:
    """One thing the line does to the bytes that cross it. This base passes them on at once.

    The relay calls ``carry`` for every chunk it reads, in each direction, impairments in the
    order given; what one returns is what the next gets.
    """

    def carry(
        self, direction: Direction, data: bytes, due: float, cancelled: threading.Event
    ) -> tuple[bytes, float] | None:
        """Chunk ``data``, due at the far end at ``due`` (time.monotonic): what arrives and when.

        Empty ``data`` is the FIN. May block (a rate is a wait); returns None if ``cancelled``
        was set meanwhile (the connection is gone).
        """
        return data, due

    def read_size(self, direction: Direction) -> int | None:
        """Bytes to read per chunk (None: no preference)."""
        return None

    def buffer_bytes(self, direction: Direction) -> int | None:
        """Bytes a delay line must be able to hold so that this impairment never throttles."""
        return None

    def stats(self) -> dict[str, float | int]:
        """Counters this impairment adds to the relay's ``stats``."""
        return {}


def _sleep_until(deadline: float, cancelled: threading.Event) -> bool:
    """Sleep until ``deadline`` (monotonic); False if ``cancelled`` was set first."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        if cancelled.wait(remaining):
            return False


class _DelayLine:
    """Chunks of one direction of one connection, each held until its release time."""

    def __init__(self, limit_bytes: int) -> None:
        self._items: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._bytes = 0
        self._limit = limit_bytes
        self._closed = False
        self._cond = threading.Condition()

    def put(self, release_at: float, data: bytes | None) -> bool:
        """Queue ``data`` (``_EOF`` for a FIN); wait while full. False once the line is closed."""
        with self._cond:
            while self._bytes >= self._limit and not self._closed:
                self._cond.wait(1.0)
            if self._closed:
                return False
            self._items.append((release_at, data))
            self._bytes += len(data) if data is not None else 0
            self._cond.notify_all()
            return True

    def take(self) -> tuple[bytes, bool] | None:
        """Wait for the next due chunks: (their bytes joined, FIN follows). None once closed."""
        with self._cond:
            while not self._closed:
                if not self._items:
                    self._cond.wait(1.0)
                    continue
                now = time.monotonic()
                due = self._items[0][0] - now
                if due > 0:
                    self._cond.wait(min(due, 1.0))
                    continue
                parts: list[bytes] = []
                size = 0
                eof = False
                while self._items and self._items[0][0] <= now and size < _COALESCE:
                    _, data = self._items.popleft()
                    if data is _EOF:
                        eof = True
                        break
                    parts.append(data)
                    size += len(data)
                self._bytes -= size
                self._cond.notify_all()
                return b"".join(parts), eof
            return None

    def close(self) -> None:
        """Drop what is queued and wake both ends."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()


class _Connection:
    """One edge connection and its host connection: four pumps (read + deliver, each way)."""

    def __init__(self, relay: Relay, ident: int, edge: socket.socket, host: socket.socket):
        self.relay = relay
        self.ident = ident
        self.edge = edge
        self.host = host
        self.aborted = threading.Event()
        self._lock = threading.Lock()
        self._lines = {d: _DelayLine(relay.buffer_bytes(d)) for d in DIRECTIONS}
        ends = {"up": (edge, host), "down": (host, edge)}
        self.threads: list[threading.Thread] = []
        for direction in DIRECTIONS:
            src, dst = ends[direction]
            line = self._lines[direction]
            self.threads.append(
                threading.Thread(
                    target=self._read,
                    args=(direction, src, line, relay.read_size(direction)),
                    name=f"linkemu-{ident}-{direction}-read",
                    daemon=True,
                )
            )
            self.threads.append(
                threading.Thread(
                    target=self._deliver,
                    args=(direction, dst, line),
                    name=f"linkemu-{ident}-{direction}-deliver",
                    daemon=True,
                )
            )
        self._running = len(self.threads)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _read(self, direction: Direction, src: socket.socket, line: _DelayLine, chunk: int) -> None:
        try:
            while not self.aborted.is_set():
                data = src.recv(chunk)
                carried = self.relay.carry(direction, data, self.aborted)
                if carried is None:
                    return
                out, due = carried
                if not data:
                    if not self.aborted.is_set():
                        line.put(due, _EOF)
                    return
                if out and not line.put(due, out):
                    return
        except OSError as exc:
            self._fail(direction, "read", exc)
        finally:
            self._thread_done()

    def _deliver(self, direction: Direction, dst: socket.socket, line: _DelayLine) -> None:
        try:
            while True:
                batch = line.take()
                if batch is None:
                    return
                data, eof = batch
                if data:
                    dst.sendall(data)
                if eof:
                    dst.shutdown(socket.SHUT_WR)
                    return
        except OSError as exc:
            self._fail(direction, "deliver", exc)
        finally:
            self._thread_done()

    def _fail(self, direction: Direction, stage: str, exc: OSError) -> None:
        if not self.aborted.is_set():  # errors after our own abort are its echo, not news
            self.relay.record(f"connection {self.ident} {direction} {stage}: {exc!r}")
        self.abort()

    def abort(self) -> None:
        """Drop both sockets (a reset to each peer) and wake every pump."""
        with self._lock:
            if self.aborted.is_set():
                return
            self.aborted.set()
        for line in self._lines.values():
            line.close()
        for sock in (self.edge, self.host):
            with contextlib.suppress(OSError):  # the peer may already be gone
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):  # ENOTCONN once the peer reset
                sock.shutdown(socket.SHUT_RDWR)

    def _thread_done(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            for line in self._lines.values():
                line.close()
            self.edge.close()
            self.host.close()
            self.relay.forget(self)

    def join(self, deadline: float) -> None:
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class Relay:
    """Listen on ``listen`` and relay every connection to ``target`` through ``impairments``.

    Use as a context manager or with ``start``/``stop``. ``stats`` counts what crossed the
    relay (and what each impairment counted); ``cut`` drops every connection and refuses new
    ones for a while.
    """

    def __init__(
        self,
        target: tuple[str, int],
        impairments: Sequence[Impairment] = (),
        listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.target = target
        self.impairments = tuple(impairments)
        self.address: tuple[str, int] = listen
        self.errors: collections.deque[str] = collections.deque(maxlen=100)
        self._listen = listen
        self._lock = threading.Lock()
        self._bytes = dict.fromkeys(DIRECTIONS, 0)
        self._conns: set[_Connection] = set()
        self._accepted = 0
        self._refused = 0
        self._cuts = 0
        self._cut_until = 0.0
        self._stopping = threading.Event()
        self._server: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The pyserial URL an edge connects to."""
        return f"socket://{self.address[0]}:{self.address[1]}"

    def start(self) -> tuple[str, int]:
        """Bind, start accepting, and return the listening address (port 0 picks one)."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__}.start called twice")
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(self._listen)
            server.listen(16)
        except OSError:
            server.close()
            raise
        server.settimeout(_ACCEPT_POLL_S)
        self._server = server
        self.address = server.getsockname()[:2]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="linkemu-accept", daemon=True
        )
        self._accept_thread.start()
        log.debug("relay %s -> %s through %s", self.address, self.target, self.impairments)
        return self.address

    def stop(self) -> None:
        """Close the listener and every connection; wait (bounded) for all pumps to end."""
        self._stopping.set()
        deadline = time.monotonic() + _STOP_JOIN_S
        if self._accept_thread is not None:
            self._accept_thread.join(_ACCEPT_POLL_S + _CONNECT_TIMEOUT_S)
        conns = self._snapshot()
        for conn in conns:
            conn.abort()
        for conn in conns:
            conn.join(deadline)

    def cut(self, seconds: float) -> None:
        """Drop every current connection (reset) and refuse new ones for ``seconds``."""
        with self._lock:
            self._cuts += 1
            self._cut_until = time.monotonic() + seconds
        for conn in self._snapshot():
            conn.abort()

    @property
    def stats(self) -> dict[str, float | int]:
        """Bytes per direction, connections relayed (all, active, refused), cuts, errors, and
        each impairment's counters."""
        with self._lock:
            stats: dict[str, float | int] = {
                "bytes_up": self._bytes["up"],
                "bytes_down": self._bytes["down"],
                "connections": self._accepted,
                "active": len(self._conns),
                "refused": self._refused,
                "cuts": self._cuts,
                "errors": len(self.errors),
            }
        for impairment in self.impairments:
            stats.update(impairment.stats())
        return stats

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the connections ask of the relay ----------------------------------------------------

    def carry(
        self, direction: Direction, data: bytes, cancelled: threading.Event
    ) -> tuple[bytes, float] | None:
        """Pass a chunk just read through every impairment; None if the connection went."""
        with self._lock:
            self._bytes[direction] += len(data)
        carried: tuple[bytes, float] | None = (data, time.monotonic())
        for impairment in self.impairments:
            carried = impairment.carry(direction, carried[0], carried[1], cancelled)
            if carried is None:
                return None
        return carried

    def read_size(self, direction: Direction) -> int:
        """The smallest chunk an impairment asks for, or DEFAULT_CHUNK."""
        sizes = [s for i in self.impairments if (s := i.read_size(direction)) is not None]
        return min(sizes, default=DEFAULT_CHUNK)

    def buffer_bytes(self, direction: Direction) -> int:
        """The largest delay-line capacity an impairment asks for, or DEFAULT_BUFFER."""
        sizes = [s for i in self.impairments if (s := i.buffer_bytes(direction)) is not None]
        return max(sizes, default=DEFAULT_BUFFER)

    def record(self, message: str) -> None:
        """Note an error (the relay keeps the last hundred)."""
        log.debug("relay %s: %s", self.address, message)
        self.errors.append(message)

    def forget(self, conn: _Connection) -> None:
        """A connection has ended."""
        with self._lock:
            self._conns.discard(conn)

    # -- accepting --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        try:
            while not self._stopping.is_set():
                try:
                    edge, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    self.record(f"accept: {exc!r}")
                    if exc.errno in (errno.EBADF, errno.EINVAL):
                        return  # the listener itself is gone
                    self._stopping.wait(0.1)  # out of descriptors and the like: try again
                    continue
                self._admit(edge)
        finally:
            server.close()

    def _admit(self, edge: socket.socket) -> None:
        with self._lock:
            refused = time.monotonic() < self._cut_until
            self._refused += refused
        if refused:
            _reset(edge)
            return
        try:
            host = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT_S)
        except OSError as exc:
            self.record(f"connect to {self.target}: {exc!r}")
            _reset(edge)
            return
        for sock in (edge, host):
            sock.settimeout(None)
            # Small messages (acks, pings) must not wait for Nagle + delayed ack.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._stopping.is_set():
                conn = None
            else:
                self._accepted += 1
                conn = _Connection(self, self._accepted, edge, host)
                self._conns.add(conn)
        if conn is None:
            _reset(edge)
            _reset(host)
            return
        conn.start()

    def _snapshot(self) -> list[_Connection]:
        with self._lock:
            return list(self._conns)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (no FIN): what a refused or dropped connection looks like."""
    with contextlib.suppress(OSError):  # the peer may have gone already
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
