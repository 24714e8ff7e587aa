"""HostListener and HostSession: the host's front door, one session per authenticated edge.

The listener remembers, per (edge_id, run_id), the highest sequence number handed to the
application (``delivered``) and the application's consumed cursor, so that a reconnecting edge
neither loses nor repeats a message; after a host restart ``resume_for`` supplies the cursor.

Edges arrive on lines (lines.py): a TCP connection, which ends with its peer, or a serial line,
which waits for the next HELLO after a refusal, a failed handshake or a lost session.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.link.channel import Channel, Inbox, Outbox
from edge_runtime.link.config import LinkConfig
from edge_runtime.link.control import Bye, Hello, Welcome
from edge_runtime.link.errors import (
    HandshakeRefused,
    LinkClosed,
    LinkError,
    LinkTimeout,
    ProtocolError,
)
from edge_runtime.link.fragments import MIN_FRAME_SIZE
from edge_runtime.link.handshake import KeyFor, check_hello_header, host_handshake, refuse
from edge_runtime.link.header import HEADER, MsgType
from edge_runtime.link.lines import HostLine, SerialLine, TcpConnection
from edge_runtime.link.messages import Message, decode_message
from edge_runtime.link.refusals import BUSY, IDLE, OVERSIZE, Refusals
from edge_runtime.link.spool import MemoryStore
from edge_runtime.link.stream import LinkStats
from edge_runtime.link.transports import SocketTransport, Transport, listen_tcp, open_url

log = logging.getLogger("hiertrain.link")

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
    """One authenticated edge on one line."""

    def __init__(self, hello: Hello, line: HostLine, cursors: _Cursors, config: LinkConfig) -> None:
        self.edge_id = hello.edge_id
        self.run_id = hello.run_id
        self.hello = hello
        self.line = line
        self._io = line.io
        self._cursors = cursors
        self._stats = line.io.stats
        self._inbox = Inbox(config.window)
        self._inbox.new_stream(cursors.delivered, cursors.consumed)
        store = MemoryStore(config.spool_max_messages, config.spool_max_bytes)
        self._outbox = Outbox(store, config)
        self._channel = Channel(line.io, self._outbox, self._inbox, config)

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
        # The edge may have reconnected meanwhile: the session that acks is the current one.
        if current is not None:
            current._acknowledge(consumed)

    def _acknowledge(self, consumed: int) -> None:
        self._inbox.consume_upto(consumed)
        self._channel.request_ack()

    def send(self, msg: Message, timeout: float | None = None) -> int:
        """Send ``msg`` to the edge (Metrics, Grad, Error...); return its sequence number.

        Delivery is reliable while this connection lasts; a new session starts a new stream.
        """
        if self._inbox.ended is not None:
            raise LinkClosed(f"session with edge {self.edge_id!r} has ended")
        payload = msg.encode()
        if max(len(payload) + HEADER.size, msg.inflated_bytes) > self._io.max_send:
            raise LinkError(f"{type(msg).__name__} exceeds max_frame {self._io.max_send}")
        return self._outbox.put(msg.TYPE, payload, timeout)

    def flush(self, timeout: float) -> None:
        """Wait until the edge has taken everything sent to it; LinkTimeout after `timeout`."""
        self._outbox.wait_consumed(timeout)

    def close(self, reason: str = "done") -> None:
        """Say BYE to the edge and end this session."""
        self._channel.send_control(Bye(reason))
        self._channel.drain_control(2.0)
        self.end(LinkClosed("session closed by the host"))
        self.line.end_session()

    def abort(self, code: str, message: str, linger: float = 2.0) -> None:
        """End this session, and the line, with an ERROR the edge takes as final: it stops with
        ``message`` instead of reconnecting (for a host that is stopping: see FINAL_CODES).

        The ERROR is one unsequenced frame, as the handshake's refusals write it, so it needs
        no acknowledgement from an edge whose sender may be blocked on a full window. Within
        ``linger`` seconds the edge reads it and closes; the line is not simply closed, since
        over TCP that would destroy the ERROR in flight (transports._drain_to_eof says why).
        """
        # Written while the session runs, in its framing: once it has ended, the line's reader
        # goes back to plain handshake frames, and a plain frame mid-session is one the edge
        # drops as stale. A data frame may follow the ERROR; the edge stops at the ERROR.
        refuse(self._io, code, message)
        self.end(LinkClosed(f"session ended by the host ({code}): {message}"))
        self.line.finish(linger)

    def end(self, error: LinkError) -> None:
        """End this session without a word to the edge; ``recv`` raises ``error`` once drained."""
        self._inbox.end(error, discard=True)
        self._outbox.fail(error)
        self._channel.stop()
        with self._cursors.lock:
            if self._cursors.session is self:
                self._cursors.session = None

    def run_channel(self) -> Hello | None:
        """Read and deliver frames until the connection ends (the listener's thread runs this).

        Returns a HELLO the edge started over with, or None once the session was ended;
        raises LinkError when the line fails.
        """
        return self._channel.run(self._io.take_backlog())


class HostListener:
    """Accepts edges over TCP or a serial device and runs ``on_session`` per authenticated edge.

    ``bundle_sha256`` is the manifest an edge must train with; None accepts any (deploys).
    ``key``: the key every edge shares, or a function of the edge id (per-board keys);
    ``revoked``: why an authenticated edge id is refused anyway, or None.
    ``bundle_info`` (Bundle.identity) lets a refusal name what differs. Every connection,
    refusal (with its reason) and disconnection is logged on "hiertrain.link".
    """

    def __init__(
        self,
        key: bytes | KeyFor,
        bundle_sha256: str | None,
        resume_for: ResumeFor | None = None,
        config: LinkConfig | None = None,
        revoked: Callable[[str], str | None] | None = None,
        bundle_info: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or LinkConfig()
        self._bundle_info = bundle_info
        self._key = key
        self._revoked = revoked
        self._bundle = bundle_sha256
        self._resume_for = resume_for
        self._cursors: dict[tuple[str, str], _Cursors] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lines: list[HostLine] = []
        self._server: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self.refusals = Refusals()
        self._handshaking = 0  # TCP peers accepted and not yet authenticated

    def serve_tcp(self, host: str, port: int, on_session: SessionHandler) -> tuple[str, int]:
        """Listen on (host, port) in the background; port 0 picks one. Returns the address."""
        self._server = listen_tcp(host, port, self.config.listen_backlog)
        self._server.settimeout(0.2)
        addr = self._server.getsockname()
        self.address = (addr[0], addr[1])
        self._spawn(self._accept_loop, on_session, name="link-accept")
        return self.address

    def serve_transport(
        self, transport: Transport, on_session: SessionHandler, peer: str = "stream"
    ) -> None:
        """Serve one already-connected stream (e.g. one end of `socket_pair`) like a TCP peer."""
        line = TcpConnection(transport, self.config, peer)
        with self._lock:
            self._handshaking += 1
        self._add(line)
        self._spawn(self._serve_connection, line, on_session, name="link-conn")

    def serve_serial(self, url: str, on_session: SessionHandler) -> None:
        """Serve one edge at a time on a serial device (or any pyserial URL), in the background."""
        transport = open_url(url, self.config.baudrate, self.config.read_timeout)
        line = SerialLine(transport, self.config, url)
        self._add(line)
        self._spawn(self._serve, line, on_session, name="link-serial")

    def close(self) -> None:
        """Stop accepting, end every session, close every line."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            sessions = [c.session for c in self._cursors.values() if c.session is not None]
            lines = list(self._lines)
        for session in sessions:
            session.end(LinkClosed("host listener closed"))
        for line in lines:
            line.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(2.0)

    def _spawn(self, target: Callable[..., None], *args: object, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _add(self, line: HostLine) -> None:
        with self._lock:
            self._lines.append(line)

    def _forget(self, line: HostLine) -> None:
        with self._lock:
            if line in self._lines:
                self._lines.remove(line)

    def _accept_loop(self, on_session: SessionHandler) -> None:
        assert self._server is not None
        while not self._closing.is_set():
            try:
                sock, addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listening socket was closed
            peer = f"{addr[0]}:{addr[1]}"
            log.info("connection from %s", peer)
            with self._lock:
                full = self._handshaking >= self.config.max_handshakes
            if full:
                # Each peer in its handshake holds a thread and a frame buffer: a flood of them
                # is turned away here, before either is spent. Counted first: a peer that sees
                # its connection closed finds the refusal in the counts.
                self.refusals.add(
                    peer, BUSY, f"{self.config.max_handshakes} peers already in their handshake"
                )
                sock.close()
                continue
            transport = SocketTransport(sock, self.config.read_timeout)
            self.serve_transport(transport, on_session, peer)

    def _leave_handshake(self, line: HostLine) -> None:
        """``line`` no longer counts against max_handshakes (authenticated, or gone)."""
        if isinstance(line, TcpConnection) and line.in_handshake:
            line.in_handshake = False
            with self._lock:
                self._handshaking -= 1

    def _serve_connection(self, line: TcpConnection, on_session: SessionHandler) -> None:
        try:
            self._serve(line, on_session)
        finally:
            self._leave_handshake(line)
            line.close()
            self._forget(line)
            log.info("connection closed")

    def _serve(self, line: HostLine, on_session: SessionHandler) -> None:
        """Handshake and run sessions on one line until it is done with (or the listener closes)."""
        hello: Hello | None = None
        try:
            while not self._closing.is_set():
                hello = hello or self._await_hello(line)
                if hello is None:
                    return  # no usable HELLO: the line is done with
                try:
                    hello = self._run_session(line, hello, on_session)
                except LinkError:
                    if not line.keeps_listening:
                        return
                    hello = None
        except LinkClosed:
            return  # the transport is gone

    def _run_session(
        self, line: HostLine, hello: Hello, on_session: SessionHandler
    ) -> Hello | None:
        """Handshake, then one session until it ends; returns the HELLO of an edge starting over."""
        try:
            hello = host_handshake(
                line.io,
                hello,
                self._key,
                self._bundle,
                self.config.handshake_timeout,
                self._bundle_info,
            )
        except HandshakeRefused as exc:
            self.refusals.add(line.peer, exc.code, exc.message, _who(hello, line))
            raise
        except LinkTimeout as exc:
            self.refusals.add(line.peer, IDLE, str(exc))
            raise
        except ProtocolError as exc:  # a malformed AUTH or second HELLO
            self.refusals.add(line.peer, "protocol", str(exc))
            refuse(line.io, "protocol", f"malformed handshake: {exc}")
            raise
        why = None if self._revoked is None else self._revoked(hello.edge_id)
        if why is not None:  # checked after AUTH: only the board itself learns it is revoked
            self.refusals.add(line.peer, "revoked", why)
            raise refuse(line.io, "auth", why)
        line.io.stats = LinkStats()
        try:
            session = self._open_session(line, hello)
        except HandshakeRefused as exc:  # the application cannot take this edge
            self.refusals.add(line.peer, exc.code, exc.message, _who(hello, line))
            refuse(line.io, exc.code, exc.message)
            raise
        self._leave_handshake(line)
        log.info("edge %r run %s authenticated", hello.edge_id, hello.run_id)
        self._spawn(on_session, session, name=f"session-{session.edge_id}")
        try:
            again = session.run_channel()
        except LinkError as exc:
            session.end(exc)
            raise
        session.end(LinkClosed(f"edge {session.edge_id!r} started a new session"))
        return again

    def _await_hello(self, line: HostLine) -> Hello | None:
        """Wait for a HELLO. Anything else gets ERROR("protocol"); None if the line gives up."""
        io = line.io
        line.await_peer()
        deadline = line.hello_deadline()
        last_error = 0.0
        oversize = io.decoder.stats.oversize_frames
        while not self._closing.is_set():
            if deadline is not None and time.monotonic() > deadline:
                self.refusals.add(line.peer, IDLE, "no HELLO within the handshake timeout")
                return None
            try:
                frame = io.read_frame(time.monotonic() + 0.2)
            finally:  # a flooding peer may be gone by now: it is counted all the same
                flooded = io.decoder.stats.oversize_frames > oversize
                oversize = io.decoder.stats.oversize_frames
                if flooded:
                    limit = io.decoder.max_frame
                    message = f"a frame above {limit} bytes before HELLO"
                    self.refusals.add(line.peer, OVERSIZE, message)
            if flooded and not line.keeps_listening:
                return None
            if frame is None:
                continue
            header, payload = frame
            if header.type == MsgType.HELLO:
                try:
                    check_hello_header(io, header)
                    hello = decode_message(header, payload)
                except HandshakeRefused as exc:
                    self.refusals.add(line.peer, exc.code, exc.message)
                except ProtocolError as exc:
                    self.refusals.add(line.peer, "protocol", f"malformed HELLO: {exc}")
                    refuse(io, "protocol", f"malformed HELLO: {exc}")
                else:
                    assert isinstance(hello, Hello)
                    return hello
            # Data from a peer that has not authenticated: never decoded, refused.
            elif time.monotonic() - last_error > 1.0:
                last_error = time.monotonic()
                message = f"handshake first: expected HELLO, got type {header.type}"
                self.refusals.add(line.peer, "protocol", message)
                refuse(io, "protocol", message)
            if not line.keeps_listening:
                return None
        return None

    def _state_for(self, key: tuple[str, str]) -> tuple[int, dict[str, Any]]:
        """The application's cursor and resume info for (edge, run). Its refusals pass on; any
        other failure of it (a bug, a state it could not read) refuses this edge with "state"
        instead of killing the line's thread with a traceback while the edge retries blind."""
        assert self._resume_for is not None
        try:
            return self._resume_for(*key)
        except HandshakeRefused:
            raise
        except Exception as exc:
            log.error("resuming edge %r run %s failed: %s: %s", *key, type(exc).__name__, exc)
            log.debug("resuming edge %r run %s", *key, exc_info=True)
            raise HandshakeRefused(
                "state", f"the host cannot resume this run: {type(exc).__name__}: {exc}"
            ) from exc

    def _open_session(self, line: HostLine, hello: Hello) -> HostSession:
        key = (hello.edge_id, hello.run_id)
        with self._lock:
            cursors = self._cursors.setdefault(key, _Cursors())
        old = cursors.session
        if old is not None:
            old.end(LinkClosed(f"edge {hello.edge_id!r} reconnected"))
            if old.line is not line:
                old.line.end_session()
        cursor, resume = (0, {}) if self._resume_for is None else self._state_for(key)
        with cursors.lock:
            cursors.consumed = max(cursors.consumed, cursor)
            cursors.delivered = max(cursors.delivered, cursors.consumed)
        # An edge's proposals only lower the host's own bounds, never below a usable frame.
        line.io.max_send = max(MIN_FRAME_SIZE, min(hello.max_frame, self.config.max_frame))
        proposed = hello.frame_size or line.io.frame_size
        frame_size = max(MIN_FRAME_SIZE, min(proposed, line.io.frame_size))
        line.io.use_frame_size(frame_size)
        session = HostSession(hello, line, cursors, self.config)
        with cursors.lock:
            cursors.session = session
        welcome = Welcome(
            cursor=cursors.consumed,
            resume=resume,
            received=cursors.delivered,
            max_frame=line.io.max_send,
            frame_size=frame_size,
        )
        line.io.write_message(welcome)
        line.io.start_session()
        return session


def _who(hello: Hello | None, line: HostLine) -> str:
    """A refused peer in the log: the edge and run its HELLO claimed, and where it came from."""
    if hello is None:
        return line.peer
    return f"edge {hello.edge_id!r} run {hello.run_id} at {line.peer}"
