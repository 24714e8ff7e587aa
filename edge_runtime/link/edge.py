"""EdgeLink: the edge's front door. Spools, sends, reconnects, resumes where the host says."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_runtime.link.channel import Channel, Inbox, Outbox
from edge_runtime.link.config import LinkConfig
from edge_runtime.link.control import Bye, Hello
from edge_runtime.link.errors import (
    FrameError,
    HandshakeRefused,
    LinkClosed,
    LinkError,
    PeerStopped,
)
from edge_runtime.link.fragments import MIN_FRAME_SIZE
from edge_runtime.link.handshake import REFUSAL_CODES, edge_handshake
from edge_runtime.link.header import HEADER, PROTOCOL_VERSION, Header
from edge_runtime.link.messages import Message
from edge_runtime.link.spool import Spool
from edge_runtime.link.stream import FrameIO, LinkStats
from edge_runtime.link.transports import Transport, open_url

log = logging.getLogger("hiertrain.link")


class EdgeLink:
    """The edge end of a link to one host. Create it with ``EdgeLink.connect``."""

    def __init__(
        self,
        url: str,
        key: bytes,
        bundle_sha256: str,
        edge_id: str,
        run_id: str,
        spool_dir: Path,
        config: LinkConfig,
        opener: Callable[[], Transport] | None = None,
        bundle_info: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self._bundle_info = bundle_info or {}
        self._opener = opener or (lambda: open_url(url, config.baudrate, config.read_timeout))
        self.config = config
        self.edge_id = edge_id
        self.run_id = run_id
        self._key = key
        self._bundle = bundle_sha256
        self._stats = LinkStats()
        self._spool = Spool(
            spool_dir, config.spool_max_messages, config.spool_max_bytes, config.spool_fsync
        )
        self._outbox = Outbox(self._spool, config)
        self._inbox = Inbox(config.window)
        self._max_send = config.max_frame
        self._channel: Channel | None = None
        self._transport: Transport | None = None
        self._dialling: Transport | None = None  # a reconnect's transport, in its handshake
        self._backlog: list[tuple[Header, memoryview]] = []
        self._closing = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.welcome_resume: dict[str, Any] = {}
        self.welcome_cursor = 0

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        key: bytes,
        bundle_sha256: str,
        edge_id: str,
        run_id: str,
        spool_dir: Path,
        config: LinkConfig | None = None,
        opener: Callable[[], Transport] | None = None,
        bundle_info: dict[str, Any] | None = None,
    ) -> EdgeLink:
        """Open ``url`` (any pyserial URL), handshake, and resume from the host's cursor.

        Retries with exponential backoff for up to ``config.connect_timeout`` (then, after a
        drop, ``config.reconnect_timeout``), logging each wait; raises
        HandshakeRefused at once if the host refuses (key, version, bundle). `opener` replaces
        opening `url` (an in-process stream, e.g. one end of `socket_pair`). `bundle_info`
        (Bundle.identity) lets a host serving another bundle name what differs.
        """
        link = cls(
            url,
            key,
            bundle_sha256,
            edge_id,
            run_id,
            Path(spool_dir),
            config or LinkConfig(),
            opener,
            bundle_info,
        )
        link._establish(first=True)
        link._thread = threading.Thread(target=link._supervise, name="edge-link", daemon=True)
        link._thread.start()
        return link

    @property
    def stats(self) -> dict[str, int]:
        """Counters; ``bytes_up``/``bytes_down`` are wire bytes including framing."""
        d = self._stats.as_dict(upward=True)
        d["spooled"] = self._spool.count
        return d

    @property
    def max_message(self) -> int:
        """The largest message this link sends: the smaller of the two ends' max_frame once the
        host has welcomed it (this end's own before)."""
        return self._max_send

    @property
    def next_seq(self) -> int:
        """The sequence number the next send() will get (persistent through the spool).

        A training loop that sends one message per batch can resume after a crash from it:
        everything below it is spooled or already consumed by the host.
        """
        return self._spool.next_seq

    @property
    def pending(self) -> int:
        """Messages sent but not yet consumed by the host."""
        return self._spool.count

    @property
    def received(self) -> int:
        """The host's received cursor: it moves with every message that arrives there."""
        return self._outbox.peer_received

    def send(self, msg: Message, timeout: float | None = None) -> int:
        """Spool and transmit ``msg``; return its sequence number.

        Blocks while the window or the spool is full; raises LinkError once the link has been
        dead past ``config.reconnect_timeout`` (or LinkTimeout after ``timeout``).
        """
        if self._closed:
            raise LinkClosed("link closed")
        if not msg.SEQUENCED:
            raise ValueError(f"{type(msg).__name__} is a control message; send() takes data")
        payload = msg.encode()
        size = max(len(payload) + HEADER.size, msg.inflated_bytes)  # a coded tensor inflates
        if size > self._max_send:
            raise FrameError(
                f"{type(msg).__name__} of {size} bytes exceeds max_frame {self._max_send}"
            )
        return self._outbox.put(msg.TYPE, payload, timeout)

    def poll(self, timeout: float = 0.0) -> Message | None:
        """Next message from the host (Metrics, Grad, Error, Bye...), or None after ``timeout``."""
        msg = self._inbox.take(timeout, lambda m: self._inbox.consume_upto(m.seq))
        channel = self._channel
        if msg is not None and msg.seq and channel is not None:
            channel.request_ack()
        return msg

    def flush(self, timeout: float) -> None:
        """Wait until the host consumed everything sent; LinkTimeout after ``timeout``."""
        self._outbox.wait_consumed(timeout)

    def close(self, reason: str = "done") -> None:
        """Say BYE (best effort) and close. Unconsumed messages stay in the spool."""
        if self._closed:
            return
        self._closed = True
        channel = self._channel
        if channel is not None and self._outbox.failure is None:
            channel.send_control(Bye(reason))
            channel.drain_control(2.0)
        self._closing.set()
        if channel is not None:
            channel.stop()
        for transport in (self._transport, self._dialling):
            if transport is not None:
                transport.close()  # a reconnect in its handshake ends here, not in a session
        if self._thread is not None:
            self._thread.join(5.0)
        self._outbox.fail(LinkClosed("link closed"))
        self._inbox.end(LinkClosed("link closed"))

    def __enter__(self) -> EdgeLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection management ----------------------------------------------------------------

    def _establish(self, first: bool = False) -> None:
        budget = self.config.reconnect_timeout
        if first and self.config.connect_timeout is not None:
            budget = self.config.connect_timeout
        deadline = time.monotonic() + budget
        delay = self.config.backoff_initial
        attempt = 0
        while True:
            attempt += 1
            try:
                self._open_once()
                if attempt > 1 or not first:
                    log.info("connected to %s (attempt %d)", self.url, attempt)
                return
            except HandshakeRefused as exc:
                if exc.code in REFUSAL_CODES:
                    raise
                last: LinkError = exc
            except LinkError as exc:
                last = exc
            if self._closing.is_set():
                raise LinkClosed("link closed")
            if time.monotonic() + delay > deadline:
                what = "cannot reach the host at" if first else "link to"
                raise LinkError(
                    f"{what} {self.url}: gave up after {attempt} attempts in {budget:g} s: {last}"
                ) from last
            # Quick first retries are routine (a host restarting); say so once they pile up.
            if attempt >= 2 or delay >= 1.0:
                log.info(
                    "waiting for %s (attempt %d, next in %.1f s): %s",
                    self.url,
                    attempt,
                    delay,
                    last,
                )
            self._closing.wait(delay)
            delay = min(delay * 2.0, self.config.backoff_max)

    def _open_once(self) -> None:
        transport = self._opener()
        io = FrameIO(transport, self.config.max_frame, self._stats, self.config.frame_size)
        hello = Hello(
            PROTOCOL_VERSION,
            self.edge_id,
            self.run_id,
            self._bundle,
            self.config.max_frame,
            frame_size=io.frame_size,
            bundle=self._bundle_info,
        )
        self._dialling = transport
        try:
            if self._closing.is_set():
                raise LinkClosed("link closed")
            welcome = edge_handshake(io, hello, self._key, self.config.handshake_timeout)
            if self._closing.is_set():
                # Closed while the handshake ran: a session opened now would outlive the link
                # (and, on a serial line, answer the next host in this run's name).
                raise LinkClosed("link closed")
        except LinkError:
            transport.close()
            raise
        finally:
            self._dialling = None
        first = self._outbox.first_held()
        if first > welcome.cursor + 1:
            transport.close()
            # The host acknowledged messages up to first - 1 once, and now remembers fewer:
            # its state was lost. Resending cannot fill that gap; the host would wait forever.
            raise HandshakeRefused(
                "state",
                f"the host consumed this run's messages up to {first - 1} but now knows only "
                f"{welcome.cursor}: its state was lost. Restore the host's state directory, "
                "or start the run over with --fresh",
            )
        if welcome.max_frame:
            io.max_send = max(MIN_FRAME_SIZE, min(welcome.max_frame, self.config.max_frame))
        proposed = welcome.frame_size or io.frame_size
        io.use_frame_size(max(MIN_FRAME_SIZE, min(proposed, io.frame_size)))
        self._max_send = io.max_send
        self._outbox.resume(welcome.cursor, welcome.received)
        self._inbox.new_stream(0, 0)
        self.welcome_resume = welcome.resume
        self.welcome_cursor = welcome.cursor
        self._backlog = io.take_backlog()
        self._transport = transport
        self._channel = Channel(io, self._outbox, self._inbox, self.config)

    def _supervise(self) -> None:
        while not self._closing.is_set():
            channel, transport = self._channel, self._transport
            assert channel is not None and transport is not None
            try:
                channel.run(self._backlog)
            except (HandshakeRefused, PeerStopped) as exc:
                self._fail(exc)  # the host said why it will not go on: no one to reconnect to
                return
            except LinkError:
                pass  # the connection died; reconnect below
            finally:
                transport.close()
                channel.join(2.0)
            if self._closing.is_set():
                return
            self._stats.reconnects += 1
            try:
                self._establish()
            except LinkError as exc:
                self._fail(exc)
                return

    def _fail(self, error: LinkError) -> None:
        self._outbox.fail(error)
        self._inbox.end(error)
