"""A user-space shaped TCP relay: a slow link (rate + delay) between an edge and a host.

The edge connects to the relay; the relay connects to the host and moves bytes both ways as a
link with the profile's rates and round-trip time would. Up is edge -> host (the relay's
clients are edges), down is host -> edge.

Each direction is one pipe shared by every connection: one token bucket per direction paces
all of that direction's traffic. A chunk leaves the bucket when the link has finished sending
it and enters the connection's delay line, which releases it one-way-delay later. Rate and
delay thus compose like a real link: a bulk transfer runs at the set rate whatever the delay,
and a small message arrives after about half the RTT. The kernel does the rest: a pump only
reads while its chunk can be sent, so a fast sender is held back by its socket buffers.

A FIN is passed on as a FIN (after the data in flight, one-way delay later), so closing
either end closes the other. An error or a reset on either side drops both sockets.
Kernel-level shaping (netns + veth + ``tc tbf``) needs root, and ``netem`` is not available
here; this relay needs neither.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import socket
import struct
import threading
import time
from types import TracebackType

from .presets import LinkProfile, parse_link

log = logging.getLogger(__name__)

_MIN_CHUNK = 4096
_MAX_CHUNK = 65536
_COALESCE = 256 * 1024  # most bytes a delay line hands to one sendall
_STOP_JOIN_S = 3.0
_CONNECT_TIMEOUT_S = 3.0
_ACCEPT_POLL_S = 0.25  # how often the accept loop looks at the stop flag
_EOF = None  # marks a FIN in a delay line


def _chunk_size(rate_bps: float) -> int:
    """Bytes read per recv: ~4 ms of traffic, between 4 KiB and 64 KiB."""
    if math.isinf(rate_bps):
        return _MAX_CHUNK
    return max(_MIN_CHUNK, min(_MAX_CHUNK, int(rate_bps / 8 * 0.004)))


def _queue_limit(rate_bps: float, one_way_s: float) -> int:
    """Bytes a delay line may hold: twice what is in flight, so the delay never throttles."""
    if math.isinf(rate_bps):
        return 16 * 2**20 if one_way_s > 0 else 2**20
    return max(256 * 1024, min(64 * 2**20, int(2 * rate_bps / 8 * one_way_s)))


def _sleep_until(deadline: float, cancelled: threading.Event) -> bool:
    """Sleep until ``deadline`` (monotonic); False if ``cancelled`` was set first."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        if cancelled.wait(remaining):
            return False


class _TokenBucket:
    """The pace of one direction of the link, shared by all its connections.

    ``reserve`` books bytes on the link and says when the link has finished sending them;
    bookings queue up (tokens go negative), so connections share the rate first come, first
    served. The bucket holds at most ``capacity`` bytes of credit: the burst after idling.
    """

    def __init__(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._bytes_per_s = rate_bps / 8
        # Burst: one chunk or 5 ms of traffic, enough to absorb a late wake-up of a pump.
        burst = 0 if math.isinf(rate_bps) else int(self._bytes_per_s * 0.005)
        self.capacity = max(_MIN_CHUNK, _chunk_size(rate_bps), burst)
        self._tokens = 0.0  # a link that has just come up owes the first chunk its full time
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.bytes = 0
        self.busy_s = 0.0

    def reserve(self, nbytes: int) -> float:
        """Book ``nbytes`` on the link; return the monotonic time the last of them is sent."""
        with self._lock:
            now = time.monotonic()
            self.bytes += nbytes
            if math.isinf(self.rate_bps):
                return now
            self.busy_s += nbytes / self._bytes_per_s
            credit = self._tokens + (now - self._stamp) * self._bytes_per_s
            self._tokens = min(float(self.capacity), credit) - nbytes
            self._stamp = now
            if self._tokens >= 0:
                return now
            return now - self._tokens / self._bytes_per_s


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

    def __init__(self, relay: ShapedRelay, ident: int, edge: socket.socket, host: socket.socket):
        self.relay = relay
        self.ident = ident
        self.edge = edge
        self.host = host
        self.aborted = threading.Event()
        self._lock = threading.Lock()
        profile = relay.profile
        self._lines = {
            "up": _DelayLine(_queue_limit(profile.up_bps, profile.one_way_s)),
            "down": _DelayLine(_queue_limit(profile.down_bps, profile.one_way_s)),
        }
        plan = (
            ("up", edge, host, relay._up, profile.up_bps),
            ("down", host, edge, relay._down, profile.down_bps),
        )
        self.threads: list[threading.Thread] = []
        for direction, src, dst, bucket, rate in plan:
            line = self._lines[direction]
            self.threads.append(
                threading.Thread(
                    target=self._read,
                    args=(direction, src, bucket, line, _chunk_size(rate)),
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

    def _read(
        self,
        direction: str,
        src: socket.socket,
        bucket: _TokenBucket,
        line: _DelayLine,
        chunk: int,
    ) -> None:
        one_way = self.relay.profile.one_way_s
        try:
            while not self.aborted.is_set():
                data = src.recv(chunk)
                if not data:
                    if not self.aborted.is_set():
                        line.put(time.monotonic() + one_way, _EOF)
                    return
                sent_at = bucket.reserve(len(data))
                if not _sleep_until(sent_at, self.aborted):
                    return
                if not line.put(sent_at + one_way, data):
                    return
        except OSError as exc:
            self._fail(direction, "read", exc)
        finally:
            self._thread_done()

    def _deliver(self, direction: str, dst: socket.socket, line: _DelayLine) -> None:
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

    def _fail(self, direction: str, stage: str, exc: OSError) -> None:
        if not self.aborted.is_set():  # errors after our own abort are its echo, not news
            self.relay._record(f"connection {self.ident} {direction} {stage}: {exc!r}")
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
            self.relay._forget(self)

    def join(self, deadline: float) -> None:
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class ShapedRelay:
    """Listen on ``listen`` and relay every connection to ``target`` through an emulated link.

    Use as a context manager or with ``start``/``stop``. ``stats`` counts what crossed the link;
    ``cut`` drops every connection and refuses new ones for a while.
    """

    def __init__(
        self,
        target: tuple[str, int],
        profile: LinkProfile,
        listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.target = target
        self.profile = profile
        self.address: tuple[str, int] = listen
        self.errors: collections.deque[str] = collections.deque(maxlen=100)
        self._listen = listen
        self._up = _TokenBucket(profile.up_bps)
        self._down = _TokenBucket(profile.down_bps)
        self._lock = threading.Lock()
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
            raise RuntimeError("ShapedRelay.start called twice")
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
        log.debug("relay %s -> %s: %s", self.address, self.target, self.profile.describe())
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
        """Bytes and link busy time per direction, connections relayed (all, active, refused)."""
        with self._lock:
            active = len(self._conns)
            return {
                "bytes_up": self._up.bytes,
                "bytes_down": self._down.bytes,
                "busy_up_s": self._up.busy_s,
                "busy_down_s": self._down.busy_s,
                "connections": self._accepted,
                "active": active,
                "refused": self._refused,
                "cuts": self._cuts,
                "errors": len(self.errors),
            }

    def __enter__(self) -> ShapedRelay:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
                    self._record(f"accept: {exc!r}")
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
            self._record(f"connect to {self.target}: {exc!r}")
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

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _record(self, message: str) -> None:
        log.debug("relay %s: %s", self.address, message)
        self.errors.append(message)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (no FIN): what a refused or dropped connection looks like."""
    with contextlib.suppress(OSError):  # the peer may have gone already
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def shaped(target: tuple[str, int], spec: str) -> ShapedRelay:
    """A (not yet started) relay to ``target`` shaped by ``spec`` (see ``parse_link``)."""
    return ShapedRelay(target, parse_link(spec))
