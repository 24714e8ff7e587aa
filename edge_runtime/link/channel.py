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
    FragNack,
    Hello,
    Keepalive,
    Nack,
)
from edge_runtime.link.errors import (
    HandshakeRefused,
    LinkClosed,
    LinkError,
    LinkTimeout,
    PeerStopped,
    ProtocolError,
)
from edge_runtime.link.fragments import (
    FRAGMENT,
    FrameSizer,
    Partial,
    add_fragment,
    cut,
    fragment_count,
    pack_fragment,
)
from edge_runtime.link.header import FLAG_FRAGMENT, FLAG_RETRANSMIT, Header, MsgType
from edge_runtime.link.messages import Malformed, Message, decode_message
from edge_runtime.link.spool import MemoryStore, Spool
from edge_runtime.link.stream import FrameIO

HANDSHAKE_CODES = ("auth", "version", "bundle")
# An unsequenced ERROR with one of these codes mid-session: the peer is stopping for good (the
# host's state or training failed; HostSession.abort). Anything else ends the connection only.
FINAL_CODES = ("state",)
_TICK = 0.05
# A receiver repeats its full list of missing fragments every this many fragments it takes, so a
# lost resend is asked for again while data flows (the sender drops copies still in flight).
_FULL_REPORT_EVERY = 16
# At most this many fragment indices in one FRAG_NACK: it must fit the smallest frame.
_REPORT_CAP = 48

FragReport = tuple[int, int, list[int]]  # (seq, upto, missing fragments below upto)


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
        self.partials: dict[int, Partial] = {}
        self._reported: set[tuple[int, int]] = set()
        self._fragments_taken = 0
        self.ended: LinkError | None = None

    def new_stream(self, received: int, consumed: int) -> None:
        """A new connection: the peer continues after ``received``."""
        with self.cond:
            self.received = received
            self.consumed = consumed
            self.pending.clear()
            self.partials.clear()
            self._reported.clear()

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
            self._deliver(max_inflated)
            return True, []

    def accept_fragment(
        self, header: Header, payload: memoryview, max_message: int, max_inflated: int | None
    ) -> tuple[bool, list[int], list[FragReport]]:
        """Take one fragment. Returns (ack now, missing seqs to NACK, fragment reports).

        A report names the fragments missing below this one (and all missing of earlier
        messages); it is sent when it names a fragment not reported before, or in full every
        ``_FULL_REPORT_EVERY`` fragments. ProtocolError if the fragment contradicts its message.
        """
        seq = header.seq
        with self.cond:
            if self.ended is not None:
                return False, [], []
            if seq <= self.received or seq in self.pending:
                return True, [], []  # a duplicate: ack again so the sender stops resending
            if seq > self.received + self.window:
                return False, self._missing(self.received + self.window), []
            part = add_fragment(self.partials, header, payload, max_message)
            (index,) = FRAGMENT.unpack_from(payload)[:1]
            self._fragments_taken += 1
            full = self._fragments_taken % _FULL_REPORT_EVERY == 0
            before = self.received
            if part.complete:
                del self.partials[seq]
                self._reported = {k for k in self._reported if k[0] != seq}
                self.pending[seq] = part.join(seq)
                self._deliver(max_inflated)
            reports = self._reports(seq, index, full)
            return self.received > before, self._missing(seq - 1), reports

    def fragment_reports(self, highest: int) -> list[FragReport]:
        """Every message up to ``highest`` held in part: what is missing of it (a probe's answer)."""
        with self.cond:
            return self._reports(highest, None, True)

    def _reports(self, seq: int, index: int | None, full: bool) -> list[FragReport]:
        out = []
        for p in sorted(self.partials):
            if p > seq:
                break
            part = self.partials[p]
            upto = index if (p == seq and index is not None) else part.count
            missing = part.missing(upto)
            if not missing or not (full or any((p, i) not in self._reported for i in missing)):
                continue
            if len(missing) > _REPORT_CAP:
                upto, missing = missing[_REPORT_CAP], missing[:_REPORT_CAP]
            self._reported.update((p, i) for i in missing)
            out.append((p, upto, missing))
        return out

    def _deliver(self, max_inflated: int | None) -> None:
        """Under the lock: hand what is contiguous from ``received + 1`` to the queue."""
        while self.received + 1 in self.pending:
            h, p = self.pending.pop(self.received + 1)
            try:
                msg = decode_message(h, p, max_inflated)
            except ProtocolError as exc:  # the frame is sound: its body is the app's problem
                msg = Malformed(h.type, str(exc), seq=h.seq)
            self.queue.append(msg)
            self.received = h.seq
        self.cond.notify_all()

    def consume_upto(self, seq: int) -> None:
        """The application is done with everything up to ``seq`` (cumulative; ACKs carry it)."""
        with self.cond:
            self.consumed = max(self.consumed, seq)

    def missing(self, highest: int) -> list[int]:
        """Sequence numbers in (received, highest] not held (at most a window of them)."""
        with self.cond:
            return self._missing(min(highest, self.received + self.window))

    def _missing(self, highest: int) -> list[int]:
        held = self.pending.keys() | self.partials.keys()  # a partial one is asked for by fragment
        return [s for s in range(self.received + 1, highest + 1) if s not in held]

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
                self.partials.clear()
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


@dataclass
class _Send:
    """One data frame to write: a whole message, or fragment ``index`` of it."""

    seq: int
    type: int
    payload: bytes
    flags: int
    data: int  # message bytes it carries
    index: int | None = None


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
        # Fragmented messages in flight, by seq: the cut they were made at (kept for every
        # resend), their payload, the fragments due to be written, when each was last written
        # (the writer's order) and which ones the peer said it holds.
        self._sizer = FrameSizer(io.frame_size, config.min_frame_size)
        self._cuts: dict[int, int] = {}
        self._payloads: dict[int, tuple[int, bytes]] = {}
        self._due: dict[int, set[int]] = {}
        self._frag_order: dict[int, dict[int, int]] = {}
        self._have: dict[int, set[int]] = {}
        self._ack_due = False
        self._stopped = False
        self._writer_error: LinkError | None = None
        self._writer = threading.Thread(target=self._write_loop, name="link-writer", daemon=True)

    # -- public -------------------------------------------------------------------------------

    def run(self, backlog: list[tuple[Header, memoryview]] | None = None) -> Hello | None:
        """Read and dispatch frames until the connection ends.

        Returns a HELLO that arrived on this connection (a peer starting over; the caller
        handshakes again) or None after stop(); raises LinkClosed when the transport dies or the
        peer is silent for ``dead_timeout``, HandshakeRefused when the peer refuses us,
        PeerStopped when it stops for good.
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
        elif mtype == MsgType.FRAG_NACK:
            frag_nack = decode_message(header, payload)
            assert isinstance(frag_nack, FragNack)
            self._on_frag_nack(frag_nack)
        elif mtype == MsgType.KEEPALIVE:
            probe = decode_message(header, payload)
            assert isinstance(probe, Keepalive)
            missing = self.inbox.missing(probe.highest)
            if missing:
                self._queue_nack(NACK_PROBE, probe.probe, missing)
            for seq, upto, frags in self.inbox.fragment_reports(probe.highest):
                self._queue_frag_nack(NACK_PROBE, probe.probe, 0, seq, upto, frags)
        elif mtype in (MsgType.CHALLENGE, MsgType.AUTH, MsgType.WELCOME):
            pass  # a stale handshake frame from before this connection settled
        elif header.seq == 0:
            self._on_unsequenced(decode_message(header, payload))
        elif header.flags & FLAG_FRAGMENT:
            self.stats.payload_bytes_received += header.length - FRAGMENT.size
            self.stats.fragments_received += 1
            before = self.inbox.received
            # The negotiated maximum message bounds a message's fragments and a coded tensor.
            limit = self.io.max_send
            ack_now, missing, reports = self.inbox.accept_fragment(header, payload, limit, limit)
            if self.inbox.received == before and ack_now:
                self.stats.duplicates += 1
            if ack_now:
                self.request_ack()
            if missing:
                self._queue_nack(NACK_DATA, header.seq, missing)
            (index,) = FRAGMENT.unpack_from(payload)[:1]
            for seq, upto, frags in reports:
                self._queue_frag_nack(NACK_DATA, header.seq, index, seq, upto, frags)
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
            if msg.code in FINAL_CODES:
                raise PeerStopped(msg.code, msg.message)
            raise LinkClosed(f"peer ended the connection ({msg.code}): {msg.message}")

    def _queue_nack(self, kind: int, trigger: int, missing: list[int]) -> None:
        self.stats.nacks_sent += 1
        self.send_control(Nack(kind, trigger, tuple(missing)))

    def _queue_frag_nack(
        self, kind: int, trigger: int, trigger_frag: int, seq: int, upto: int, missing: list[int]
    ) -> None:
        self.stats.frag_nacks_sent += 1
        self.send_control(FragNack(kind, trigger, trigger_frag, seq, upto, tuple(missing)))

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
                for seq in [s for s in self._cuts if s <= received]:
                    for held in (self._cuts, self._payloads, self._due, self._frag_order):
                        held.pop(seq, None)
                    self._have.pop(seq, None)
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

    def _on_frag_nack(self, nack: FragNack) -> None:
        """Resend the fragments the peer lacks that were sent before what revealed the gap."""
        self.stats.nacks += 1
        with self._cond:
            seq = nack.seq_missing
            if seq <= self.outbox.peer_received or seq not in self._cuts:
                return
            count = fragment_count(len(self._payloads[seq][1]), self._cuts[seq])
            missing = {i for i in nack.missing if i < count}
            have = self._have.setdefault(seq, set())
            have.update(i for i in range(min(nack.upto, count)) if i not in missing)
            threshold: int | None = None
            if nack.kind == NACK_DATA:
                orders = self._frag_order.get(nack.trigger)
                if orders is not None:
                    threshold = orders.get(nack.trigger_frag)
                elif nack.trigger in self._tx:
                    threshold = self._tx[nack.trigger].order
            elif nack.kind == NACK_PROBE:
                threshold = self._probes.get(nack.trigger)
            if threshold is None:
                return
            sent = self._frag_order.get(seq, {})
            due = self._due.setdefault(seq, set())
            lost = [i for i in missing if i not in due and sent.get(i, threshold) < threshold]
            due.update(lost)
            if lost:
                self._sizer.lost(len(lost))
                self._cond.notify_all()

    # -- writer side --------------------------------------------------------------------------

    def _rto(self) -> float:
        in_flight = sum(t.size for s, t in self._tx.items() if s > self.outbox.peer_received)
        floor = self.config.rto_min_reliable if self.io.transport.reliable else self.config.rto_min
        base = floor + 2.0 * in_flight / max(self.outbox.throughput, 1.0)
        return min(base * self._backoff, self.config.rto_max)

    def _next_job(self) -> _Send | Message | None:
        """Under the lock: a data frame to (re)send, a control message to write, or None."""
        out = self.outbox
        if self._control:
            return self._control.popleft()
        if self._ack_due:
            self._ack_due = False
            return Ack(self.inbox.received, self.inbox.consumed)
        for seq in sorted(self._resend):
            self._resend.discard(seq)
            if seq > out.peer_received and seq in out.store:
                if seq in self._cuts:  # resend what the peer is not known to hold
                    count = fragment_count(len(self._payloads[seq][1]), self._cuts[seq])
                    unheld = set(range(count)) - self._have.get(seq, set())
                    self._due.setdefault(seq, set()).update(unheld)
                    continue
                mtype, payload = out.store.get(seq)
                return _Send(seq, mtype, payload, FLAG_RETRANSMIT, len(payload))
        fragment = self._next_fragment()
        if fragment is not None:
            return fragment
        self._sent_upto = max(self._sent_upto, out.peer_received)
        while self._sent_upto < out.last_seq:
            seq = self._sent_upto + 1
            if seq in out.store:
                mtype, payload = out.store.get(seq)
                size = self._sizer.size
                if len(payload) <= size:
                    return _Send(seq, mtype, payload, 0, len(payload))
                self._cuts[seq] = size
                self._payloads[seq] = (mtype, payload)
                self._due[seq] = set(range(fragment_count(len(payload), size)))
                self._sent_upto = seq
                return self._next_fragment()
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

    def _next_fragment(self) -> _Send | None:
        """Under the lock: the lowest fragment due, of the lowest message, or None."""
        for seq in sorted(self._due):
            due = self._due[seq]
            if not due or seq <= self.outbox.peer_received:
                del self._due[seq]
                continue
            index = min(due)
            due.discard(index)
            mtype, payload = self._payloads[seq]
            size = self._cuts[seq]
            data = cut(payload, size, index)
            body = pack_fragment(index, fragment_count(len(payload), size), data)
            resent = index in self._frag_order.get(seq, {})
            flags = FLAG_FRAGMENT | (FLAG_RETRANSMIT if resent else 0)
            return _Send(seq, mtype, body, flags, len(data), index)
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
                    if isinstance(job, _Send) and job.index is None and job.seq in self._tx:
                        job.flags |= FLAG_RETRANSMIT
                if isinstance(job, _Send):
                    self._write_data(job)
                else:
                    self._write_control(job)
        except LinkError as exc:
            self._writer_error = exc
            self.io.transport.close()

    def _write_data(self, job: _Send) -> None:
        seq = job.seq
        size = self.io.write(
            job.type, job.payload, seq=seq, ack=self.inbox.received, flags=job.flags
        )
        retransmit = bool(job.flags & FLAG_RETRANSMIT)
        self.stats.payload_bytes_sent += job.data
        with self._cond:
            self._order += 1
            now = time.monotonic()
            if job.index is None:
                self.stats.retransmits += retransmit
                self._tx[seq] = _Tx(self._order, now, size)
            else:
                self.stats.fragments_sent += 1
                self.stats.fragment_retransmits += retransmit
                self._sizer.sent(len(job.payload))
                self.stats.frame_size = self._sizer.size
                self._frag_order.setdefault(seq, {})[job.index] = self._order
                tx = self._tx.get(seq)
                if tx is None:
                    self._tx[seq] = _Tx(self._order, now, size)
                else:  # the message is in flight from its last frame on
                    tx.time = now
                    tx.size += 0 if retransmit else size
            self._sent_upto = max(self._sent_upto, seq)
            self._last_write = now
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
