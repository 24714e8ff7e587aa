"""Frames over a transport: write messages, read checked (header, payload) pairs, count bytes."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

from edge_runtime.link.errors import FrameError
from edge_runtime.link.framing import DELIMITER, FrameDecoder, encode_frame
from edge_runtime.link.header import HEADER, Header, decode_header
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
    reconnects: int = 0

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


class FrameIO:
    """One transport with its decoder: the only place frames are written and read."""

    def __init__(self, transport: Transport, max_frame: int, stats: LinkStats) -> None:
        self.transport = transport
        self.max_frame = max_frame
        self.max_send = max_frame  # lowered to the negotiated maximum after the handshake
        self.decoder = FrameDecoder(max_frame)
        self.stats = stats
        self._write_lock = threading.Lock()
        self._seen = (0, 0, 0)
        self._started = False
        self._backlog: list[tuple[Header, memoryview]] = []

    def write(
        self, msg_type: int, payload: bytes, seq: int = 0, ack: int = 0, flags: int = 0
    ) -> int:
        """Frame and write one message; return the bytes put on the wire."""
        if len(payload) + HEADER.size > self.max_send:
            raise FrameError(
                f"message of {len(payload) + HEADER.size} bytes exceeds max_frame {self.max_send}"
            )
        header = Header(type=msg_type, seq=seq, ack=ack, flags=flags, length=len(payload))
        frame = encode_frame(header.pack() + payload)
        with self._write_lock:
            if not self._started:
                # A lone delimiter first: whatever the receiver buffered before is cut off there.
                frame = DELIMITER + frame
                self._started = True
            self.transport.write(frame)
        self.stats.bytes_sent += len(frame)
        self.stats.frames_sent += 1
        return len(frame)

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
        bodies = self.decoder.feed(data)
        ds = self.decoder.stats
        crc, oversize, dropped = ds.crc_errors, ds.oversize_frames, ds.dropped_bytes
        broken = (crc - self._seen[0]) + (oversize - self._seen[1])
        self.stats.crc_errors += crc - self._seen[0]
        self.stats.oversize_frames += oversize - self._seen[1]
        self.stats.dropped_bytes += dropped - self._seen[2]
        self._seen = (crc, oversize, dropped)
        frames = []
        for body in bodies:
            try:
                frames.append(decode_header(body, self.max_frame))
            except FrameError:
                broken += 1
                self.stats.crc_errors += 1
                continue
            self.stats.frames_received += 1
        return frames, len(data), broken

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
