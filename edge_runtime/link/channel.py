"""Reliable, ordered delivery over one connection: sequence numbers, window, ACK/NACK, RTO.

State that must outlive a connection lives in ``Outbox`` (what we send: the store, the peer's
cursors, back-pressure) and ``Inbox`` (what we receive: cursors and the delivery queue). A
``Channel`` binds them to one ``FrameIO`` for as long as the connection lasts: its reader runs in
the caller's thread (``run``), its writer in a thread of its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge_runtime.link.config import LinkConfig
from edge_runtime.link.control import (
    NACK_CORRUPT,
    NACK_DATA,
    NACK_PROBE,
    Ack,
    Bye,
    Error,
    Hello,
    Keepalive,
    Nack,
)
from edge_runtime.link.errors import (
    HandshakeRefused,
    LinkClosed,
    LinkError,
    LinkTimeout,
    ProtocolError,
)
from edge_runtime.link.header import FLAG_RETRANSMIT, Header, MsgType
from edge_runtime.link.messages import Malformed, Message, decode_message
from edge_runtime.link.spool import MemoryStore, Spool
from edge_runtime.link.stream import FrameIO

HANDSHAKE_CODES = ("auth", "version", "bundle")
_TICK = 0.05


class Outbox:
    """Everything we send that the peer has not consumed yet, and the peer's two cursors."""

    def __init__(self, store: Spool | MemoryStore, config: LinkConfig) -> None:
        self.store = store
        self.window = config.window
        self.cond = threading.Condition()
        self.peer_received = 0
        self.peer_consumed = 0
        self.throughput = config.initial_throughput()
        self.failure: LinkError | None = None

    @property
    def last_seq(self) -> int:
        """Highest sequence number handed out."""
        return self.store.next_seq - 1

    def put(self, msg_type: int, payload: bytes, timeout: float | None = None) -> int:
        """Store a message under the next sequence number; block while window or store is full."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                if self.failure is not None:
                    raise self.failure
                in_flight = self.last_seq - self.peer_received
                if in_flight < self.window and self.store.has_room(len(payload)):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise LinkTimeout("window or spool still full")
                self.cond.wait(_TICK if remaining is None else min(remaining, _TICK))
            seq = self.store.append(msg_type, payload)
            self.cond.notify_all()
            return seq

    def first_held(self) -> int:
        """The lowest sequence number this side can still send (all below were consumed)."""
        with self.cond:
            seqs = self.store.seqs()
            return seqs[0] if seqs else self.store.next_seq

    def resume(self, cursor: int, received: int) -> None:
        """Start a connection: the peer consumed up to ``cursor`` and holds up to ``received``."""
        with self.cond:
            received = max(received, cursor)
            self.store.advance_to(received + 1)  # never reuse a number the peer has seen
            self.store.drop_upto(cursor)
            self.peer_consumed = cursor
            self.peer_received = received
            self.cond.notify_all()

    def fail(self, error: LinkError) -> None:
        """Make every waiting and future put raise ``error``."""
        with self.cond:
            self.failure = error
            self.cond.notify_all()

    def wait_consumed(self, timeout: float) -> None:
        """Block until the peer consumed everything stored; LinkTimeout after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.store.count and self.peer_consumed < self.last_seq:
                if self.failure is not None:
                    raise self.failure
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkTimeout(
                        f"{self.last_seq - self.peer_consumed} messages not consumed after {timeout} s"
                    )
                self.cond.wait(min(remaining, _TICK))


class Inbox:
    """What we received: the contiguous cursor, out-of-order frames and the delivery queue."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.cond = threading.Condition()
        self.received = 0
        self.consumed = 0
        self.queue: deque[Message] = deque()
        self.pending: dict[int, tuple[Header, memoryview]] = {}
        self.ended: LinkError | None = None

    def new_stream(self, received: int, consumed: int) -> None:
        """A new connection: the peer continues after ``received``."""
        with self.cond:
            self.received = received
            self.consumed = consumed
            self.pending.clear()

    def accept(
        self, header: Header, payload: memoryview, max_inflated: int | None = None
    ) -> tuple[bool, list[int]]:
        """Take a sequenced frame. Returns (ack now, missing seqs to NACK).

        ``max_inflated`` bounds a coded tensor's inflated size (see decode_message)."""
        seq = header.seq
        with self.cond:
            if self.ended is not None:
                return False, []
            if seq <= self.received:
                return True, []  # a duplicate: ack again so the sender stops resending
            if seq > self.received + self.window:
                return False, self._missing(self.received + self.window)
            self.pending[seq] = (header, payload)
            if seq != self.received + 1:
                return False, self._missing(seq - 1)
            while self.received + 1 in self.pending:
                h, p = self.pending.pop(self.received + 1)
                try:
                    msg = decode_message(h, p, max_inflated)
                except ProtocolError as exc:  # the frame is sound: its body is the app's problem
                    msg = Malformed(h.type, str(exc), seq=h.seq)
                self.queue.append(msg)
                self.received = h.seq
            self.cond.notify_all()
            return True, []

    def consume_upto(self, seq: int) -> None:
        """The application is done with everything up to ``seq`` (cumulative; ACKs carry it)."""
        with self.cond:
            self.consumed = max(self.consumed, seq)

    def missing(self, highest: int) -> list[int]:
        """Sequence numbers in (received, highest] not held (at most a window of them)."""
        with self.cond:
            return self._missing(min(highest, self.received + self.window))

    def _missing(self, highest: int) -> list[int]:
        return [s for s in range(self.received + 1, highest + 1) if s not in self.pending]

    def push(self, msg: Message) -> None:
        """Queue an unsequenced message (BYE) behind what was received in order."""
        with self.cond:
            self.queue.append(msg)
            self.cond.notify_all()

    def end(self, error: LinkError, discard: bool = False) -> None:
        """No more messages will come; take() raises ``error`` once the queue is empty.

        ``discard`` drops the sequenced messages still queued: the peer will send them again
        on its next connection, since they were never handed to the application.
        """
        with self.cond:
            if self.ended is None:
                self.ended = error
            if discard:
                self.queue = deque(m for m in self.queue if m.seq == 0)
                self.pending.clear()
            self.cond.notify_all()

    def take(
        self, timeout: float | None, on_take: Callable[[Message], None] | None = None
    ) -> Message | None:
        """Next message in order, None after ``timeout``; raises once ended and drained.

        ``on_take`` runs under the inbox lock with the message taken, so that a concurrent
        end(discard=True) sees its effect.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not self.queue:
                if self.ended is not None:
                    raise self.ended
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self.cond.wait(remaining)
            msg = self.queue.popleft()
            if on_take is not None:
                on_take(msg)
            return msg


@dataclass
class _Tx:
    order: int
    time: float
    size: int


class Channel:
    """One connection's worth of reliable delivery in both directions."""

    def __init__(
        self,
        io: FrameIO,
        outbox: Outbox,
        inbox: Inbox,
        config: LinkConfig,
    ) -> None:
        self.io = io
        self.outbox = outbox
        self.inbox = inbox
        self.config = config
        self.stats = io.stats
        self._cond = outbox.cond
        self._sent_upto = outbox.peer_received
        self._tx: dict[int, _Tx] = {}
        self._resend: set[int] = set()
        self._order = 0
        self._probe = 0
        self._probes: dict[int, int] = {}
        self._progress = time.monotonic()
        self._backoff = 1.0
        self._last_write = 0.0
        self._control: deque[Message] = deque()
        self._ack_due = False
        self._stopped = False
        self._writer_error: LinkError | None = None
        self._writer = threading.Thread(target=self._write_loop, name="link-writer", daemon=True)

    # -- public -------------------------------------------------------------------------------

    def run(self, backlog: list[tuple[Header, memoryview]] | None = None) -> Hello | None:
        """Read and dispatch frames until the connection ends.

        Returns a HELLO that arrived on this connection (a peer starting over; the caller
        handshakes again) or None after stop(); raises LinkClosed when the transport dies or the
        peer is silent for ``dead_timeout``, HandshakeRefused when the peer refuses us.
        """
        self._writer.start()
        try:
            last_rx = time.monotonic()
            frames, broken = list(backlog or []), 0
            while not self._stopped:
                if broken:
                    self._queue_nack(NACK_CORRUPT, 0, self.inbox.missing(self.inbox.received + 1))
                for header, payload in frames:
                    hello = self._dispatch(header, payload)
                    if hello is not None:
                        return hello
                if self._writer_error is not None:
                    raise self._writer_error
                frames, nbytes, broken = self.io.read()
                now = time.monotonic()
                if nbytes:
                    last_rx = now
                elif now - last_rx > self.config.dead_timeout:
                    raise LinkClosed(f"peer silent for {self.config.dead_timeout} s")
            return None
        except ProtocolError as exc:
            # Tell the peer why the connection ends; it may be gone already.
            with contextlib.suppress(LinkError):
                self.io.write_message(Error("protocol", str(exc)))
            raise
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the writer (the transport is left to its owner)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        """Wait for the writer thread to end."""
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join(timeout)

    def request_ack(self) -> None:
        """Send an ACK soon (the application consumed something)."""
        with self._cond:
            self._ack_due = True
            self._cond.notify_all()

    def send_control(self, msg: Message) -> None:
        """Send an unsequenced message ahead of data."""
        with self._cond:
            self._control.append(msg)
            self._cond.notify_all()

    def drain_control(self, timeout: float) -> None:
        """Wait until queued unsequenced messages have been written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._control and not self._stopped and time.monotonic() < deadline:
                self._cond.wait(_TICK)

    # -- reader side --------------------------------------------------------------------------

    def _dispatch(self, header: Header, payload: memoryview) -> Hello | None:
        mtype = header.type
        if mtype == MsgType.HELLO:
            msg = decode_message(header, payload)
            assert isinstance(msg, Hello)
            return msg
        self._on_ack(header.ack, None)
        if mtype == MsgType.ACK:
            ack = decode_message(header, payload)
            assert isinstance(ack, Ack)
            self._on_ack(ack.received, ack.consumed)
        elif mtype == MsgType.NACK:
            nack = decode_message(header, payload)
            assert isinstance(nack, Nack)
            self._on_nack(nack)
        elif mtype == MsgType.KEEPALIVE:
            probe = decode_message(header, payload)
            assert isinstance(probe, Keepalive)
            missing = self.inbox.missing(probe.highest)
            if missing:
                self._queue_nack(NACK_PROBE, probe.probe, missing)
        elif mtype in (MsgType.CHALLENGE, MsgType.AUTH, MsgType.WELCOME):
            pass  # a stale handshake frame from before this connection settled
        elif header.seq == 0:
            self._on_unsequenced(decode_message(header, payload))
        else:
            self.stats.payload_bytes_received += header.length
            before = self.inbox.received
            # The negotiated maximum frame bounds a coded tensor too (io.max_send, agreed at HELLO).
            ack_now, missing = self.inbox.accept(header, payload, self.io.max_send)
            if self.inbox.received == before and ack_now:
                self.stats.duplicates += 1
            if ack_now:
                self.request_ack()
            if missing:
                self._queue_nack(NACK_DATA, header.seq, missing)
        return None

    def _on_unsequenced(self, msg: Message) -> None:
        if isinstance(msg, Bye):
            self.inbox.push(msg)
        elif isinstance(msg, Error):
            if msg.code in HANDSHAKE_CODES:
                raise HandshakeRefused(msg.code, msg.message)
            raise LinkClosed(f"peer ended the connection ({msg.code}): {msg.message}")

    def _queue_nack(self, kind: int, trigger: int, missing: list[int]) -> None:
        self.stats.nacks_sent += 1
        self.send_control(Nack(kind, trigger, tuple(missing)))

    def _on_ack(self, received: int, consumed: int | None) -> None:
        out = self.outbox
        now = time.monotonic()
        with self._cond:
            received = min(received, self._sent_upto)
            if received > out.peer_received:
                self._measure(out.peer_received, received, now)
                out.peer_received = received
                self._progress = now
                self._backoff = 1.0
                for seq in [s for s in self._tx if s <= received]:
                    del self._tx[seq]
                self._resend = {s for s in self._resend if s > received}
                self._cond.notify_all()
            if consumed is not None and consumed > out.peer_consumed:
                consumed = min(consumed, out.peer_received)
                out.store.drop_upto(consumed)
                out.peer_consumed = consumed
                self._cond.notify_all()

    def _measure(self, old: int, new: int, now: float) -> None:
        sent = [self._tx[s] for s in range(old + 1, new + 1) if s in self._tx]
        if not sent:
            return
        start = max(self._progress, min(t.time for t in sent))
        elapsed = now - start
        if elapsed > 1e-3:
            sample = sum(t.size for t in sent) / elapsed
            self.outbox.throughput = 0.7 * self.outbox.throughput + 0.3 * sample

    def _on_nack(self, nack: Nack) -> None:
        self.stats.nacks += 1
        now = time.monotonic()
        with self._cond:
            threshold: int | None = None
            if nack.kind == NACK_DATA and nack.trigger in self._tx:
                threshold = self._tx[nack.trigger].order
            elif nack.kind == NACK_PROBE:
                threshold = self._probes.get(nack.trigger)
            for seq in nack.missing:
                tx = self._tx.get(seq)
                if tx is None or seq <= self.outbox.peer_received:
                    continue
                # Resend only copies sent before what revealed the gap: later ones are in flight.
                if threshold is not None and tx.order >= threshold:
                    continue
                if threshold is None and now - tx.time < self.config.rto_min:
                    continue
                self._resend.add(seq)
            self._cond.notify_all()

    # -- writer side --------------------------------------------------------------------------

    def _rto(self) -> float:
        in_flight = sum(t.size for s, t in self._tx.items() if s > self.outbox.peer_received)
        floor = self.config.rto_min_reliable if self.io.transport.reliable else self.config.rto_min
        base = floor + 2.0 * in_flight / max(self.outbox.throughput, 1.0)
        return min(base * self._backoff, self.config.rto_max)

    def _next_job(self) -> int | Message | None:
        """Under the lock: a seq to (re)send, a control message to write, or None to wait."""
        out = self.outbox
        if self._control:
            return self._control.popleft()
        if self._ack_due:
            self._ack_due = False
            return Ack(self.inbox.received, self.inbox.consumed)
        for seq in sorted(self._resend):
            self._resend.discard(seq)
            if seq > out.peer_received and seq in out.store:
                return seq
        self._sent_upto = max(self._sent_upto, out.peer_received)
        while self._sent_upto < out.last_seq:
            seq = self._sent_upto + 1
            if seq in out.store:
                return seq
            self._sent_upto = seq  # consumed meanwhile: nothing to send
        now = time.monotonic()
        in_flight = [s for s in self._tx if s > out.peer_received]
        if in_flight:
            head = self._tx[min(in_flight)]
            if now - max(self._progress, head.time) > self._rto():
                self.stats.timeouts += 1
                self._resend.update(in_flight)
                self._progress = now
                self._backoff = min(self._backoff * 2.0, 64.0)
                return self._next_job()
        if now - self._last_write >= self.config.keepalive_interval:
            self._probe += 1
            return Keepalive(self._probe, self._sent_upto)
        return None

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stopped:
                        return
                    job = self._next_job()
                    if job is None:
                        self._cond.wait(_TICK)
                        continue
                    if isinstance(job, int):
                        mtype, payload = self.outbox.store.get(job)
                        retransmit = job in self._tx
                if isinstance(job, int):
                    self._write_data(job, mtype, payload, retransmit)
                else:
                    self._write_control(job)
        except LinkError as exc:
            self._writer_error = exc
            self.io.transport.close()

    def _write_data(self, seq: int, mtype: int, payload: bytes, retransmit: bool) -> None:
        flags = FLAG_RETRANSMIT if retransmit else 0
        size = self.io.write(mtype, payload, seq=seq, ack=self.inbox.received, flags=flags)
        self.stats.payload_bytes_sent += len(payload)
        if retransmit:
            self.stats.retransmits += 1
        with self._cond:
            self._order += 1
            self._tx[seq] = _Tx(self._order, time.monotonic(), size)
            self._sent_upto = max(self._sent_upto, seq)
            self._last_write = time.monotonic()
            self._cond.notify_all()

    def _write_control(self, msg: Message) -> None:
        ack = self.inbox.received
        if isinstance(msg, Keepalive):
            self.stats.keepalives += 1
            # An idle ACK too: a lost ACK must not hold the peer's spool forever.
            self.io.write_message(Ack(self.inbox.received, self.inbox.consumed), ack=ack)
        self.io.write_message(msg, ack=ack)
        with self._cond:
            self._order += 1
            if isinstance(msg, Keepalive):
                self._probes[msg.probe] = self._order
                self._probes.pop(msg.probe - 64, None)
            self._last_write = time.monotonic()
            self._cond.notify_all()
