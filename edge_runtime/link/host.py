"""HostListener and HostSession: the host's front door, one session per authenticated edge.

The listener remembers, per (edge_id, run_id), the highest sequence number handed to the
application (``delivered``) and the application's consumed cursor, so that a reconnecting edge
neither loses nor repeats a message; after a host restart ``resume_for`` supplies the cursor.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.link.channel import Channel, Inbox, Outbox
from edge_runtime.link.config import LinkConfig
from edge_runtime.link.errors import HandshakeRefused, LinkClosed, LinkError
from edge_runtime.link.handshake import check_hello_header, host_handshake, refuse
from edge_runtime.link.messages import HEADER, Bye, Hello, Message, MsgType, Welcome, decode_message
from edge_runtime.link.spool import MemoryStore
from edge_runtime.link.stream import FrameIO, LinkStats
from edge_runtime.link.transports import SocketTransport, Transport, listen_tcp, open_url

ResumeFor = Callable[[str, str], tuple[int, dict[str, Any]]]
SessionHandler = Callable[["HostSession"], None]


@dataclass
class _Cursors:
    """What the host knows of one (edge_id, run_id) across its sessions."""

    delivered: int = 0
    consumed: int = 0
    session: HostSession | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class HostSession:
    """One authenticated edge on one connection."""

    def __init__(
        self, hello: Hello, io: FrameIO, cursors: _Cursors, config: LinkConfig, serial: bool
    ) -> None:
        self.edge_id = hello.edge_id
        self._serial = serial
        self.run_id = hello.run_id
        self.hello = hello
        self._io = io
        self._cursors = cursors
        self._stats = io.stats
        self._inbox = Inbox(config.window)
        self._inbox.new_stream(cursors.delivered, cursors.consumed)
        store = MemoryStore(config.spool_max_messages, config.spool_max_bytes)
        self._outbox = Outbox(store, config)
        self._channel = Channel(io, self._outbox, self._inbox, config)

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this session; ``bytes_up`` is what came from the edge."""
        return self._stats.as_dict(upward=False)

    @property
    def cursor(self) -> int:
        """The consumed cursor of this (edge_id, run_id)."""
        return self._cursors.consumed

    def recv(self, timeout: float | None = None) -> Message | None:
        """Next in-order message from the edge (``msg.seq`` set), None on timeout.

        Raises LinkClosed once the edge is gone (after a BYE, the next call raises).
        """
        msg = self._inbox.take(timeout, self._delivered)
        if isinstance(msg, Bye):
            self._inbox.end(LinkClosed(f"edge {self.edge_id!r} said bye: {msg.reason}"))
        return msg

    def _delivered(self, msg: Message) -> None:
        if msg.seq:
            with self._cursors.lock:
                self._cursors.delivered = max(self._cursors.delivered, msg.seq)

    def consumed(self, seq: int) -> None:
        """Declare everything up to ``seq`` durably consumed by the application (cumulative)."""
        with self._cursors.lock:
            if seq > self._cursors.delivered:
                raise ValueError(
                    f"cannot consume seq {seq}: only {self._cursors.delivered} were delivered"
                )
            self._cursors.consumed = max(self._cursors.consumed, seq)
            current = self._cursors.session
            consumed = self._cursors.consumed
        if current is not None:
            with current._inbox.cond:
                current._inbox.consumed = max(current._inbox.consumed, consumed)
            current._channel.request_ack()

    def send(self, msg: Message, timeout: float | None = None) -> int:
        """Send ``msg`` to the edge (Metrics, Grad, Error...); return its sequence number.

        Delivery is reliable while this connection lasts; a new session starts a new stream.
        """
        if self._inbox.ended is not None:
            raise LinkClosed(f"session with edge {self.edge_id!r} has ended")
        payload = msg.encode()
        if len(payload) + HEADER.size > self._io.max_send:
            raise LinkError(f"{type(msg).__name__} exceeds max_frame {self._io.max_send}")
        return self._outbox.put(msg.TYPE, payload, timeout)

    def flush(self, timeout: float) -> None:
        """Wait until the edge has taken everything sent to it; LinkTimeout after `timeout`."""
        self._outbox.wait_consumed(timeout)

    def close(self, reason: str = "done") -> None:
        """Say BYE to the edge and end this session."""
        self._channel.send_control(Bye(reason))
        self._channel.drain_control(2.0)
        self._end(LinkClosed("session closed by the host"))
        if not self._serial:  # a serial port stays open for the next HELLO
            self._io.transport.close()

    def _end(self, error: LinkError) -> None:
        self._inbox.end(error, discard=True)
        self._outbox.fail(error)
        self._channel.stop()
        with self._cursors.lock:
            if self._cursors.session is self:
                self._cursors.session = None


class HostListener:
    """Accepts edges over TCP or a serial device and runs ``on_session`` per authenticated edge.

    ``bundle_sha256`` is the manifest an edge must train with; None accepts any (deploys).
    """

    def __init__(
        self,
        key: bytes,
        bundle_sha256: str | None,
        resume_for: ResumeFor | None = None,
        config: LinkConfig | None = None,
    ) -> None:
        self.config = config or LinkConfig()
        self._key = key
        self._bundle = bundle_sha256
        self._resume_for = resume_for
        self._cursors: dict[tuple[str, str], _Cursors] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[Transport] = []
        self._server: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self.refusals: list[HandshakeRefused] = []

    def serve_tcp(self, host: str, port: int, on_session: SessionHandler) -> tuple[str, int]:
        """Listen on (host, port) in the background; port 0 picks one. Returns the address."""
        self._server = listen_tcp(host, port)
        self._server.settimeout(0.2)
        addr = self._server.getsockname()
        self.address = (addr[0], addr[1])
        self._spawn(self._accept_loop, on_session, name="link-accept")
        return self.address

    def serve_transport(self, transport: Transport, on_session: SessionHandler) -> None:
        """Serve one already-connected stream (e.g. one end of `socket_pair`) like a TCP peer."""
        with self._lock:
            self._transports.append(transport)
        self._spawn(self._serve, transport, on_session, False, name="link-conn")

    def serve_serial(self, url: str, on_session: SessionHandler) -> None:
        """Serve one edge at a time on a serial device (or any pyserial URL), in the background."""
        transport = open_url(url, self.config.baudrate, self.config.read_timeout)
        self._transports.append(transport)
        self._spawn(self._serve, transport, on_session, True, name="link-serial")

    def close(self) -> None:
        """Stop accepting, end every session, close every transport."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            sessions = [c.session for c in self._cursors.values() if c.session is not None]
            transports = list(self._transports)
        for session in sessions:
            session._end(LinkClosed("host listener closed"))
        for transport in transports:
            transport.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(2.0)

    def _spawn(self, target: Callable[..., None], *args: object, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self, on_session: SessionHandler) -> None:
        assert self._server is not None
        while not self._closing.is_set():
            try:
                sock, _addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listening socket was closed
            transport = SocketTransport(sock, self.config.read_timeout)
            with self._lock:
                self._transports.append(transport)
            self._spawn(self._serve, transport, on_session, False, name="link-conn")

    def _serve(self, transport: Transport, on_session: SessionHandler, serial: bool) -> None:
        """Handshake and run sessions on one transport until it dies (TCP) or the listener closes."""
        io = FrameIO(transport, self.config.max_frame, LinkStats())
        hello: Hello | None = None
        try:
            while not self._closing.is_set():
                if hello is None:
                    hello = self._await_hello(io, serial)
                    if hello is None:
                        if serial:
                            continue
                        return
                try:
                    hello = host_handshake(
                        io, hello, self._key, self._bundle, self.config.handshake_timeout
                    )
                except HandshakeRefused as exc:
                    self.refusals.append(exc)
                    if not serial:
                        return
                    hello = None
                    continue
                except LinkError:
                    if not serial:
                        return
                    hello = None
                    continue
                io.stats = LinkStats()
                try:
                    session = self._open_session(io, hello, serial)
                except HandshakeRefused as exc:  # the application cannot take this edge
                    self.refusals.append(refuse(io, exc.code, exc.message))
                    if not serial:
                        return
                    hello = None
                    continue
                self._spawn(on_session, session, name=f"session-{session.edge_id}")
                try:
                    hello = session._channel.run(io.take_backlog())
                except LinkError as exc:
                    session._end(exc)
                    if not serial:
                        return
                    hello = None
                    continue
                session._end(LinkClosed(f"edge {session.edge_id!r} started a new session"))
        except LinkClosed:
            return  # the transport is gone
        finally:
            if not serial:
                transport.close()
                with self._lock:
                    if transport in self._transports:
                        self._transports.remove(transport)

    def _await_hello(self, io: FrameIO, serial: bool) -> Hello | None:
        """Wait for a HELLO. Anything else gets ERROR("protocol"); a TCP peer is then dropped."""
        deadline = None if serial else time.monotonic() + self.config.handshake_timeout
        last_error = 0.0
        while not self._closing.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return None
            frame = io.read_frame(time.monotonic() + 0.2)
            if frame is None:
                continue
            header, payload = frame
            if header.type == MsgType.HELLO:
                try:
                    check_hello_header(io, header)
                except HandshakeRefused as exc:
                    self.refusals.append(exc)
                    if serial:
                        continue
                    return None
                hello = decode_message(header, payload)
                assert isinstance(hello, Hello)
                return hello
            # Data from a peer that has not authenticated: never decoded, refused.
            if time.monotonic() - last_error > 1.0:
                last_error = time.monotonic()
                refuse(io, "protocol", f"handshake first: expected HELLO, got type {header.type}")
            if not serial:
                return None
        return None

    def _open_session(self, io: FrameIO, hello: Hello, serial: bool) -> HostSession:
        key = (hello.edge_id, hello.run_id)
        with self._lock:
            cursors = self._cursors.setdefault(key, _Cursors())
        old = cursors.session
        if old is not None:
            old._end(LinkClosed(f"edge {hello.edge_id!r} reconnected"))
            if old._io.transport is not io.transport:
                old._io.transport.close()
        cursor, resume = (0, {}) if self._resume_for is None else self._resume_for(*key)
        with cursors.lock:
            cursors.consumed = max(cursors.consumed, cursor)
            cursors.delivered = max(cursors.delivered, cursors.consumed)
        io.max_send = min(hello.max_frame, self.config.max_frame)
        session = HostSession(hello, io, cursors, self.config, serial)
        with cursors.lock:
            cursors.session = session
        welcome = Welcome(
            cursor=cursors.consumed,
            resume=resume,
            received=cursors.delivered,
            max_frame=io.max_send,
        )
        io.write_message(welcome)
        return session
