"""Frames on a byte stream: COBS(body | crc32(body)) followed by a 0x00 delimiter.

The framing layer knows bytes only. ``body`` is the message header plus its payload; the
decoder hands back bodies whose CRC matched and counts everything it had to throw away.

Once a session runs, its CRC starts from a seed of its own (``session_tag``, from the
handshake's nonce) instead of 0: a frame left on a serial line by an earlier session (a late
acknowledgement, a retransmission) fails the check in the next one instead of passing as one
of its messages with the same sequence number. The decoder tells which frames carry the
session's seed and which the plain CRC (the handshake's).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

from cobs import cobs

from edge_runtime.link.errors import FrameError

DELIMITER = b"\x00"
CRC_SIZE = 4
_CRC = struct.Struct("!I")


def max_encoded_size(max_body: int) -> int:
    """Largest number of bytes (delimiter excluded) that a body of ``max_body`` bytes encodes to."""
    raw = max_body + CRC_SIZE
    return raw + raw // 254 + 1


def session_tag(nonce: bytes) -> int:
    """The CRC seed of the session a handshake with ``nonce`` opens (never 0, the plain seed)."""
    tag = int.from_bytes(hashlib.sha256(b"hiertrain session\x00" + nonce).digest()[:4], "big")
    return tag or 1


def encode_frame(body: bytes | bytearray | memoryview, tag: int = 0) -> bytes:
    """Frame ``body`` for the wire: COBS-encoded body and its CRC32 (seeded with the session's
    ``tag``; 0 outside a session), then the 0x00 delimiter."""
    crc = zlib.crc32(body, tag) & 0xFFFFFFFF
    return cobs.encode(bytes(body) + _CRC.pack(crc)) + DELIMITER


def _unframe(encoded: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """COBS-decode one frame (without its delimiter): its body and the CRC it carries."""
    try:
        raw = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError(f"bad COBS encoding: {exc}") from exc
    if len(raw) < CRC_SIZE:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than its CRC")
    (crc,) = _CRC.unpack_from(raw, len(raw) - CRC_SIZE)
    return raw[:-CRC_SIZE], crc


def decode_frame(encoded: bytes | bytearray | memoryview, tag: int = 0) -> bytes:
    """Decode one frame (without its delimiter) back to its body; raise FrameError if broken
    or framed in another session than ``tag``'s."""
    body, crc = _unframe(encoded)
    if zlib.crc32(body, tag) & 0xFFFFFFFF != crc:
        raise FrameError("CRC mismatch")
    return body


@dataclass
class DecoderStats:
    """What a FrameDecoder saw: good frames and what it had to drop."""

    frames: int = 0
    bytes_in: int = 0
    dropped_bytes: int = 0
    crc_errors: int = 0
    oversize_frames: int = 0


class FrameDecoder:
    """Split a byte stream into frame bodies; resynchronise on the next 0x00 after garbage.

    At most ``max_encoded_size(max_frame)`` bytes are ever buffered: a frame that grows past
    that is dropped whole (counted in ``oversize_frames``) and the decoder skips to the next
    delimiter. A frame that fails COBS or CRC is dropped and counted in ``crc_errors``.
    ``feed`` never raises on bad input.

    A frame's CRC may hold with the plain seed or with ``session_tag`` (once set);
    ``feed_frames`` says which. An ``observer`` (a wiretap in the tests) knows no session and
    checks no CRC: it reads every frame's body, the damaged ones too.
    """

    def __init__(self, max_frame: int, observer: bool = False) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, got {max_frame}")
        self.max_frame = max_frame
        self.limit = max_encoded_size(max_frame)
        self.stats = DecoderStats()
        self.session_tag: int | None = None
        self.observer = observer
        self._buf = bytearray()
        self._skipping = False

    def set_limit(self, max_frame: int) -> None:
        """Take frame bodies up to ``max_frame`` from now on (e.g. larger after authentication)."""
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, got {max_frame}")
        self.max_frame = max_frame
        self.limit = max_encoded_size(max_frame)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume ``data``; return the bodies of the frames it completed, in order."""
        return [body for body, _ in self.feed_frames(data)]

    def feed_frames(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bool]]:
        """Consume ``data``; return (body, framed in the session) of each frame it completed."""
        data = bytes(data)
        self.stats.bytes_in += len(data)
        out: list[tuple[bytes, bool]] = []
        start = 0
        while start < len(data):
            end = data.find(0, start)
            if end < 0:
                self._absorb(memoryview(data)[start:])
                break
            self._absorb(memoryview(data)[start:end])
            self._complete(out)
            start = end + 1
        return out

    def _absorb(self, chunk: memoryview) -> None:
        if self._skipping:
            self.stats.dropped_bytes += len(chunk)
            return
        if len(self._buf) + len(chunk) > self.limit:
            self.stats.dropped_bytes += len(self._buf) + len(chunk)
            self.stats.oversize_frames += 1
            self._buf.clear()
            self._skipping = True
            return
        self._buf += chunk

    def _complete(self, out: list[tuple[bytes, bool]]) -> None:
        if self._skipping:
            self._skipping = False
            return
        if not self._buf:
            return  # back-to-back delimiters: nothing to decode
        encoded = bytes(self._buf)
        self._buf.clear()
        try:
            body, crc = _unframe(encoded)
            in_session = self._check(body, crc)
        except FrameError:
            self.stats.crc_errors += 1
            self.stats.dropped_bytes += len(encoded) + 1
            return
        if len(body) > self.max_frame:
            self.stats.oversize_frames += 1
            self.stats.dropped_bytes += len(encoded) + 1
            return
        self.stats.frames += 1
        out.append((body, in_session))

    def _check(self, body: bytes, crc: int) -> bool:
        """Whether the CRC holds with the session's seed (True) or the plain one (False)."""
        tag = self.session_tag
        if tag is not None and zlib.crc32(body, tag) & 0xFFFFFFFF == crc:
            return True
        if self.observer or zlib.crc32(body) & 0xFFFFFFFF == crc:
            return False
        raise FrameError("CRC mismatch")
