"""Frames on a byte stream: COBS(body | crc32(body)) followed by a 0x00 delimiter.

The framing layer knows bytes only. ``body`` is the message header plus its payload; the
decoder hands back bodies whose CRC matched and counts everything it had to throw away.
"""

from __future__ import annotations

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


def encode_frame(body: bytes | bytearray | memoryview) -> bytes:
    """Frame ``body`` for the wire: COBS-encoded body and CRC32, then the 0x00 delimiter."""
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return cobs.encode(bytes(body) + _CRC.pack(crc)) + DELIMITER


def decode_frame(encoded: bytes | bytearray | memoryview) -> bytes:
    """Decode one frame (without its delimiter) back to its body; raise FrameError if broken."""
    try:
        raw = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError(f"bad COBS encoding: {exc}") from exc
    if len(raw) < CRC_SIZE:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than its CRC")
    body = raw[:-CRC_SIZE]
    (crc,) = _CRC.unpack_from(raw, len(raw) - CRC_SIZE)
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
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
    """

    def __init__(self, max_frame: int) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, got {max_frame}")
        self.max_frame = max_frame
        self.limit = max_encoded_size(max_frame)
        self.stats = DecoderStats()
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
        data = bytes(data)
        self.stats.bytes_in += len(data)
        out: list[bytes] = []
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

    def _complete(self, out: list[bytes]) -> None:
        if self._skipping:
            self._skipping = False
            return
        if not self._buf:
            return  # back-to-back delimiters: nothing to decode
        encoded = bytes(self._buf)
        self._buf.clear()
        try:
            body = decode_frame(encoded)
        except FrameError:
            self.stats.crc_errors += 1
            self.stats.dropped_bytes += len(encoded) + 1
            return
        if len(body) > self.max_frame:
            self.stats.oversize_frames += 1
            self.stats.dropped_bytes += len(encoded) + 1
            return
        self.stats.frames += 1
        out.append(body)
