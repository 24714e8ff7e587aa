"""Fragments: a message cut into frames of a bounded size, reassembled in order on arrival.

A noisy serial line loses frames, not messages: a 4 MB message sent as one frame carries a
fault at one byte error in a million almost surely and never arrives. Cut into frames of a few
KiB, each frame is checked (the framing's CRC32) and resent alone; the message is delivered
once, whole, when its last missing frame arrives. Sequence numbers, acknowledgements and the
spool stay per message (channel.py).

A fragment is a frame whose header has FLAG_FRAGMENT set; its payload starts with
``u32 index | u32 count`` and goes on with bytes ``[index * cut, (index + 1) * cut)`` of the
message payload. The cut is the sender's choice per message (FrameSizer) and the same for
every resend of that message; the receiver only concatenates.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.framing import CRC_SIZE
from edge_runtime.link.header import HEADER, Header

FRAGMENT = struct.Struct("!II")
KiB = 1024
# Frame payload sizes by line: a serial line loses bytes, so its frames stay small; a TCP stream
# loses nothing while it lives, so its frames only bound what one read must buffer.
SERIAL_FRAME_SIZE = 4 * KiB
STREAM_FRAME_SIZE = 256 * KiB
MIN_FRAME_SIZE = 256
# Bytes a frame costs besides its data: header, fragment prefix, CRC, delimiter, COBS (~1/254).
FRAME_OVERHEAD = HEADER.size + FRAGMENT.size + CRC_SIZE + 2


def pack_fragment(index: int, count: int, data: bytes | memoryview) -> bytes:
    """A fragment's payload: its place in the message, then its bytes."""
    return FRAGMENT.pack(index, count) + bytes(data)


def cut(payload: bytes, size: int, index: int) -> memoryview:
    """Bytes of fragment ``index`` when ``payload`` is cut every ``size`` bytes."""
    return memoryview(payload)[index * size : (index + 1) * size]


def fragment_count(length: int, size: int) -> int:
    """How many fragments a payload of ``length`` bytes makes at ``size`` bytes each."""
    return max(1, math.ceil(length / size))


@dataclass
class Partial:
    """A message of which some fragments have arrived."""

    type: int
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0

    def missing(self, below: int | None = None) -> list[int]:
        """Fragment indices not held, below ``below`` (default: all of them)."""
        top = self.count if below is None else min(below, self.count)
        return [i for i in range(top) if i not in self.parts]

    @property
    def complete(self) -> bool:
        """Every fragment is in."""
        return len(self.parts) == self.count

    def join(self, seq: int) -> tuple[Header, memoryview]:
        """The whole message as one frame would have carried it."""
        payload = b"".join(self.parts[i] for i in range(self.count))
        return Header(type=self.type, seq=seq, length=len(payload)), memoryview(payload)


def add_fragment(
    partials: dict[int, Partial], header: Header, payload: memoryview, max_message: int
) -> Partial:
    """File one fragment under its message; ProtocolError if it contradicts what came before.

    ``max_message`` bounds what one message may hold in memory (the negotiated max_frame), so a
    peer cannot make the receiver buffer more by claiming many fragments.
    """
    if len(payload) < FRAGMENT.size:
        raise ProtocolError(f"fragment of message {header.seq} is {len(payload)} bytes")
    index, count = FRAGMENT.unpack_from(payload)
    if count < 2 or index >= count or count > max_message:
        raise ProtocolError(f"fragment {index} of {count} of message {header.seq}")
    part = partials.get(header.seq)
    if part is None:
        part = partials[header.seq] = Partial(header.type, count)
    elif part.type != header.type or part.count != count:
        raise ProtocolError(
            f"fragment of message {header.seq} says type {header.type} of {count} fragments; "
            f"earlier ones said type {part.type} of {part.count}"
        )
    if index not in part.parts:
        data = bytes(payload[FRAGMENT.size :])
        if part.size + len(data) > max_message:
            raise ProtocolError(f"message {header.seq} grows past max_frame {max_message}")
        part.parts[index] = data
        part.size += len(data)
    return part


class FrameSizer:
    """The frame size a sender cuts messages at, adapted to the loss it measures.

    A frame of ``s`` data bytes costs ``s + H`` on the wire and arrives with probability
    ``(1 - e) ** (s + H)`` at a byte error rate ``e``: the goodput ``s / (s + H) * (1 - e) **
    (s + H)`` peaks near ``s = sqrt(H / e)`` (about 5.5 KiB at e = 1e-6, 1.7 KiB at 1e-5). The
    rate is estimated from the fraction of fragments the peer reported lost (an exponentially
    weighted mean over recent reports), so a clean line keeps the largest negotiated size.
    """

    def __init__(self, limit: int, minimum: int = MIN_FRAME_SIZE) -> None:
        self.limit = max(limit, 1)
        self.minimum = min(minimum, self.limit)
        self.size = self.limit
        self._sent = 0.0
        self._lost = 0.0
        self._bytes = 0.0

    def sent(self, nbytes: int) -> None:
        """A fragment of ``nbytes`` went out (first copy or resend)."""
        self._sent += 1
        self._bytes += nbytes
        if int(self._sent) % 256 == 0:
            self._resize()  # a line that became clean earns its larger frames back

    def lost(self, n: int = 1) -> None:
        """The peer reported ``n`` fragments missing: resize."""
        self._lost += n
        self._resize()

    def _resize(self) -> None:
        if self._sent < 32:
            return  # too few samples to say anything of the line
        p = min(self._lost / self._sent, 0.5)
        mean = self._bytes / self._sent + FRAME_OVERHEAD
        e = -math.log1p(-p) / mean
        best = math.sqrt(FRAME_OVERHEAD / e) if e > 0 else self.limit
        self.size = int(min(self.limit, max(self.minimum, best)))
        # Forget slowly: the estimate follows a line whose noise changes.
        if self._sent > 4096:
            self._sent, self._lost, self._bytes = self._sent / 2, self._lost / 2, self._bytes / 2
