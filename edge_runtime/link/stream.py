"""Frames over a transport: write messages, read checked (header, payload) pairs, count bytes."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

from edge_runtime.link.errors import FrameError
from edge_runtime.link.fragments import FRAGMENT, SERIAL_FRAME_SIZE, STREAM_FRAME_SIZE
from edge_runtime.link.framing import DELIMITER, FrameDecoder, encode_frame, session_tag
from edge_runtime.link.header import HEADER, Header, MsgType, decode_header
from edge_runtime.link.messages import Message
from edge_runtime.link.transports import Transport


@dataclass
class LinkStats:
    """Counters of one end of a link (all connections of it together)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    payload_bytes_sent: int = 0
    payload_bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    retransmits: int = 0
    timeouts: int = 0
    nacks_sent: int = 0
    nacks: int = 0
    duplicates: int = 0
    keepalives: int = 0
    dropped_bytes: int = 0
    crc_errors: int = 0
    oversize_frames: int = 0
    stale_frames: int = 0  # frames of an earlier session on the same line, dropped
    reconnects: int = 0
    fragments_sent: int = 0
    fragments_received: int = 0
    fragment_retransmits: int = 0
    frag_nacks_sent: int = 0
    frame_size: int = 0  # the size the sender cuts messages at now (adapted to the line)

    def as_dict(self, upward: bool) -> dict[str, int]:
        """Counters as a dict, with ``*_up``/``*_down`` names (up: edge to host).

        ``upward`` is True on the edge (what it sends goes up) and False on the host.
        """
        d = asdict(self)
        sent, received = ("up", "down") if upward else ("down", "up")
        d[f"bytes_{sent}"] = d["bytes_sent"]
        d[f"bytes_{received}"] = d["bytes_received"]
        d[f"payload_bytes_{sent}"] = d["payload_bytes_sent"]
        d[f"payload_bytes_{received}"] = d["payload_bytes_received"]
        return d


# Frames outside the session that may still come while it runs: an edge starting over (HELLO),
# a refusal (ERROR). Anything else framed without the session's seed is another session's.
_PLAIN_IN_SESSION = frozenset({MsgType.HELLO, MsgType.ERROR})


class FrameIO:
    """One transport with its decoder: the only place frames are written and read.

    Sessions: the handshake frames carry the plain CRC; ``expect_session(nonce)`` (each side,
    once it knows the CHALLENGE's nonce) makes the session's frames readable,
    ``start_session()`` (the host after writing WELCOME, the edge after reading it) frames
    what this end writes with the session's seed, and ``end_session()`` (a serial line whose
    session is over) marks frames still arriving with that seed as stale. Stale frames are
    counted (``stale_frames``) and never returned.
    """

    def __init__(
        self,
        transport: Transport,
        max_frame: int,
        stats: LinkStats,
        frame_size: int | None = None,
        read_limit: int | None = None,
    ) -> None:
        """``max_frame`` bounds a message; ``frame_size`` a frame's payload once the session
        runs (None: by line, see fragments.py); ``read_limit`` the frames read until then."""
        self.transport = transport
        self.max_frame = max_frame
        self.max_send = max_frame  # lowered to the negotiated maximum after the handshake
        if frame_size is None:
            frame_size = STREAM_FRAME_SIZE if transport.reliable else SERIAL_FRAME_SIZE
        self.frame_size = min(frame_size, max_frame)
        self.decoder = FrameDecoder(read_limit or max_frame)
        self.stats = stats
        self._write_lock = threading.Lock()
        self._seen = (0, 0, 0)
        self._started = False
        self._backlog: list[tuple[Header, memoryview]] = []
        self._write_tag = 0  # the CRC seed of what this end writes: the session's once it runs
        self._session_over = False

    def expect_session(self, nonce: bytes) -> None:
        """The handshake's nonce is known: frames of the session it opens are readable. Until
        ``start_session`` this end writes plain frames (the rest of the handshake)."""
        self.decoder.session_tag = session_tag(nonce)
        self._write_tag = 0
        self._session_over = False

    def start_session(self) -> None:
        """The session runs: what this end writes from now on carries its seed."""
        assert self.decoder.session_tag is not None, "expect_session first"
        self._write_tag = self.decoder.session_tag

    @property
    def in_session(self) -> bool:
        """True from ``start_session`` until ``end_session`` or the next handshake."""
        return self._write_tag != 0

    def end_session(self) -> None:
        """The session is over; the line waits for the next HELLO, in plain frames."""
        self._write_tag = 0
        self._session_over = True

    def write(
        self, msg_type: int, payload: bytes, seq: int = 0, ack: int = 0, flags: int = 0
    ) -> int:
        """Frame and write one message; return the bytes put on the wire."""
        if len(payload) + HEADER.size > self.max_send:
            raise FrameError(
                f"message of {len(payload) + HEADER.size} bytes exceeds max_frame {self.max_send}"
            )
        header = Header(type=msg_type, seq=seq, ack=ack, flags=flags, length=len(payload))
        frame = encode_frame(header.pack() + payload, self._write_tag)
        with self._write_lock:
            if not self._started:
                # A lone delimiter first: whatever the receiver buffered before is cut off there.
                frame = DELIMITER + frame
                self._started = True
            self.transport.write(frame)
        self.stats.bytes_sent += len(frame)
        self.stats.frames_sent += 1
        return len(frame)

    def use_frame_size(self, frame_size: int) -> None:
        """The negotiated frame size: what this end cuts messages at and reads at most."""
        self.frame_size = frame_size
        self.decoder.set_limit(HEADER.size + FRAGMENT.size + frame_size)

    def write_message(self, msg: Message, seq: int = 0, ack: int = 0) -> int:
        """Frame and write ``msg``; return the bytes put on the wire."""
        return self.write(msg.TYPE, msg.encode(), seq=seq, ack=ack)

    def read(self) -> tuple[list[tuple[Header, memoryview]], int, int]:
        """Read what the transport has (waiting at most its read timeout).

        Returns the complete frames, the number of bytes read, and how many frames were found
        broken (bad COBS/CRC, oversize, bad header) in those bytes.
        """
        data = self.transport.read()
        if not data:
            return [], 0, 0
        self.stats.bytes_received += len(data)
        bodies = self.decoder.feed_frames(data)
        ds = self.decoder.stats
        crc, oversize, dropped = ds.crc_errors, ds.oversize_frames, ds.dropped_bytes
        broken = (crc - self._seen[0]) + (oversize - self._seen[1])
        self.stats.crc_errors += crc - self._seen[0]
        self.stats.oversize_frames += oversize - self._seen[1]
        self.stats.dropped_bytes += dropped - self._seen[2]
        self._seen = (crc, oversize, dropped)
        frames = []
        for body, in_session in bodies:
            try:
                header, payload = decode_header(body, self.decoder.max_frame)
            except FrameError:
                broken += 1
                self.stats.crc_errors += 1
                continue
            self.stats.frames_received += 1
            if self._stale(header, in_session):
                self.stats.stale_frames += 1
                continue
            frames.append((header, payload))
        return frames, len(data), broken

    def _stale(self, header: Header, in_session: bool) -> bool:
        """A frame of a session that is over, or one framed outside the session running now."""
        if in_session:
            return self._session_over
        return self.in_session and header.type not in _PLAIN_IN_SESSION

    def read_frame(self, deadline: float) -> tuple[Header, memoryview] | None:
        """The next frame, or None once ``deadline`` (time.monotonic) has passed."""
        while True:
            if self._backlog:
                return self._backlog.pop(0)
            if time.monotonic() >= deadline:
                return None
            frames, _n, _broken = self.read()
            self._backlog.extend(frames)

    def take_backlog(self) -> list[tuple[Header, memoryview]]:
        """Frames read by read_frame but not returned yet (handed on after a handshake)."""
        frames, self._backlog = self._backlog, []
        return frames
