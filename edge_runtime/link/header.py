"""The frame header and the table of message type codes.

Header (network order, 16 bytes): version u8 | type u8 | flags u16 | seq u32 | ack u32 | length u32.
The codes are allocated here, in one table, so that two families never claim the same one; each
family defines and registers its own message classes (``messages.register``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from edge_runtime.link.errors import FrameError

# 2: messages above the negotiated frame size travel as fragments (fragments.py).
# 3: a session's frames carry a CRC seeded by its handshake (framing.session_tag).
PROTOCOL_VERSION = 3

HEADER = struct.Struct("!BBHIII")
FLAG_RETRANSMIT = 0x0001
FLAG_FRAGMENT = 0x0002  # the payload starts with u32 index | u32 count (fragments.py)


class MsgType(IntEnum):
    """Message type codes (the header's type byte), by family; docs/protocol.md section 3."""

    # The link itself (edge_runtime/link/control.py): handshake, session, delivery.
    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    ERROR = 20
    BYE = 21
    ACK = 32
    NACK = 33
    KEEPALIVE = 34
    FRAG_NACK = 35
    # Training (edge_runtime/train/messages.py).
    BATCH = 16
    EVAL_BATCH = 17
    EPOCH_END = 18
    METRICS = 19
    GRAD = 48
    RAW_BATCH = 49
    UPLOAD_DONE = 51
    # Deploy over the link (edge_runtime/deploy_messages.py).
    FILE_CHUNK = 50
    DEPLOY_INVENTORY = 64
    DEPLOY_FILE = 65
    DEPLOY_COMMIT = 66
    DEPLOY_DONE = 67
    # The trained model out, after training (edge_runtime/model_messages.py).
    MODEL_WEIGHTS = 80
    # Hierarchical inference (edge_runtime/infer/messages.py).
    INFER_REQUEST = 81
    INFER_ANSWER = 82


@dataclass(frozen=True)
class Header:
    """The fixed header in front of every payload."""

    type: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    length: int = 0
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        """The header's 16 bytes."""
        return HEADER.pack(self.version, self.type, self.flags, self.seq, self.ack, self.length)


def decode_header(body: bytes, max_payload: int) -> tuple[Header, memoryview]:
    """Split a frame body into its header and payload; check the length before using it."""
    if len(body) < HEADER.size:
        raise FrameError(f"frame of {len(body)} bytes is shorter than the header")
    version, mtype, flags, seq, ack, length = HEADER.unpack_from(body)
    if length > max_payload:
        raise FrameError(f"payload length {length} exceeds the maximum {max_payload}")
    if length != len(body) - HEADER.size:
        raise FrameError(
            f"header says {length} payload bytes, frame holds {len(body) - HEADER.size}"
        )
    header = Header(type=mtype, seq=seq, ack=ack, flags=flags, length=length, version=version)
    return header, memoryview(body)[HEADER.size :]
