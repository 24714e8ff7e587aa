"""The link's own messages: the handshake, the end of a session, and delivery control (ARQ).

These are what the link needs whatever the application: importing the link registers them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import MsgType
from edge_runtime.link.messages import JsonMessage, Message, register

# -- handshake ----------------------------------------------------------------------------------


@register
@dataclass
class Hello(JsonMessage):
    """First frame from the edge: JSON {version, edge_id, run_id, bundle_sha256, max_frame,
    frame_size, bundle}.

    ``max_frame``: the largest message (header + payload) the edge takes; ``frame_size``: the
    largest frame payload it takes (larger messages come as fragments); 0: the host's choice.
    ``bundle`` describes the edge's bundle (model, split, shapes) so that a host serving
    another one can say what differs, not only that two hashes do; an edge that does not
    send it is compared by hash alone.
    """

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    SEQUENCED: ClassVar[bool] = False
    version: int
    edge_id: str
    run_id: str
    bundle_sha256: str
    max_frame: int
    frame_size: int = field(default=0, metadata={"omit_default": True})
    bundle: dict[str, Any] = field(default_factory=dict, metadata={"omit_default": True})


def _digest(payload: memoryview | bytes, what: str) -> bytes:
    if len(payload) != 32:
        raise ProtocolError(f"{what} is {len(payload)} bytes, expected 32")
    return bytes(payload)


@register
@dataclass
class Challenge(Message):
    """The host's nonce: 32 random bytes."""

    TYPE: ClassVar[MsgType] = MsgType.CHALLENGE
    SEQUENCED: ClassVar[bool] = False
    nonce: bytes

    def encode(self) -> bytes:
        """Payload: the nonce."""
        return bytes(self.nonce)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Challenge:
        """Decode; the nonce must be 32 bytes."""
        return cls(_digest(payload, "challenge nonce"))


@register
@dataclass
class Auth(Message):
    """The edge's answer: HMAC-SHA256 (32 bytes), see handshake.auth_digest."""

    TYPE: ClassVar[MsgType] = MsgType.AUTH
    SEQUENCED: ClassVar[bool] = False
    hmac: bytes

    def encode(self) -> bytes:
        """Payload: the digest."""
        return bytes(self.hmac)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Auth:
        """Decode; the digest must be 32 bytes."""
        return cls(_digest(payload, "auth digest"))


@register
@dataclass
class Welcome(JsonMessage):
    """Session accepted: JSON {cursor, received, max_frame, frame_size, resume}.

    ``cursor``: highest seq the host application has consumed; ``received``: highest seq the
    host has already handed to its application (>= cursor); ``max_frame``: the negotiated
    maximum message (header + payload); ``frame_size``: the negotiated largest frame payload
    (fragments.py); ``resume``: application resume info.
    """

    TYPE: ClassVar[MsgType] = MsgType.WELCOME
    SEQUENCED: ClassVar[bool] = False
    cursor: int
    resume: dict[str, Any] = field(default_factory=dict)
    received: int = 0
    max_frame: int = 0
    frame_size: int = field(default=0, metadata={"omit_default": True})


# -- the end of a session -----------------------------------------------------------------------


@register
@dataclass
class Error(JsonMessage):
    """An error the peer must know about: JSON {"code", "message"}.

    Sent unsequenced during the handshake (codes "auth", "version", "bundle", "protocol"),
    sequenced afterwards.
    """

    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: str
    message: str


@register
@dataclass
class Bye(Message):
    """Orderly end of a session: UTF-8 reason."""

    TYPE: ClassVar[MsgType] = MsgType.BYE
    reason: str = ""

    def encode(self) -> bytes:
        """Payload: the reason, UTF-8."""
        return self.reason.encode()

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Bye:
        """Decode."""
        return cls(bytes(payload).decode())


# -- delivery -----------------------------------------------------------------------------------

_ACK = struct.Struct("!II")


@register
@dataclass
class Ack(Message):
    """Cumulative cursors: u32 received | u32 consumed (received is also in the header ack)."""

    TYPE: ClassVar[MsgType] = MsgType.ACK
    SEQUENCED: ClassVar[bool] = False
    received: int
    consumed: int

    def encode(self) -> bytes:
        """Payload: both cursors."""
        return _ACK.pack(self.received, self.consumed)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Ack:
        """Decode."""
        return cls(*_ACK.unpack(bytes(payload)))


NACK_DATA, NACK_PROBE, NACK_CORRUPT = 0, 1, 2
_NACK = struct.Struct("!BIH")


@register
@dataclass
class Nack(Message):
    """Missing sequence numbers: u8 kind | u32 trigger | u16 n | u32 missing[n].

    ``kind`` says what revealed the gap: NACK_DATA (``trigger`` is the seq of the data frame
    that arrived after the gap), NACK_PROBE (``trigger`` is the probe id of a KEEPALIVE) or
    NACK_CORRUPT (a frame failed its CRC; ``trigger`` is 0).
    """

    TYPE: ClassVar[MsgType] = MsgType.NACK
    SEQUENCED: ClassVar[bool] = False
    kind: int
    trigger: int
    missing: tuple[int, ...]

    def encode(self) -> bytes:
        """Payload as in the class docstring."""
        missing = self.missing[:0xFFFF]
        return _NACK.pack(self.kind, self.trigger, len(missing)) + struct.pack(
            f"!{len(missing)}I", *missing
        )

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Nack:
        """Decode."""
        view = bytes(payload)
        kind, trigger, n = _NACK.unpack_from(view)
        missing = struct.unpack_from(f"!{n}I", view, _NACK.size)
        return cls(kind, trigger, tuple(missing))


_KEEPALIVE = struct.Struct("!II")


@register
@dataclass
class Keepalive(Message):
    """Idle probe: u32 probe id | u32 highest seq the sender has transmitted."""

    TYPE: ClassVar[MsgType] = MsgType.KEEPALIVE
    SEQUENCED: ClassVar[bool] = False
    probe: int = 0
    highest: int = 0

    def encode(self) -> bytes:
        """Payload: probe id and highest transmitted seq."""
        return _KEEPALIVE.pack(self.probe, self.highest)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Keepalive:
        """Decode."""
        return cls(*_KEEPALIVE.unpack(bytes(payload)))


_FRAG_NACK = struct.Struct("!BIIIIH")


@register
@dataclass
class FragNack(Message):
    """Fragments of one message missing at the receiver.

    u8 kind | u32 trigger | u32 trigger_frag | u32 seq | u32 upto | u16 n | u32 missing[n]:
    of fragments ``[0, upto)`` of message ``seq`` the receiver lacks exactly ``missing`` (and
    holds the others). ``kind`` and ``trigger`` as in Nack; ``trigger_frag`` is the fragment
    index of the data frame that revealed the gap (NACK_DATA), so that the sender resends only
    copies sent before it.
    """

    TYPE: ClassVar[MsgType] = MsgType.FRAG_NACK
    SEQUENCED: ClassVar[bool] = False
    kind: int
    trigger: int
    trigger_frag: int
    seq_missing: int
    upto: int
    missing: tuple[int, ...]

    def encode(self) -> bytes:
        """Payload as in the class docstring."""
        head = _FRAG_NACK.pack(
            self.kind,
            self.trigger,
            self.trigger_frag,
            self.seq_missing,
            self.upto,
            len(self.missing),
        )
        return head + struct.pack(f"!{len(self.missing)}I", *self.missing)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> FragNack:
        """Decode."""
        view = bytes(payload)
        kind, trigger, frag, seq, upto, n = _FRAG_NACK.unpack_from(view)
        missing = struct.unpack_from(f"!{n}I", view, _FRAG_NACK.size)
        return cls(kind, trigger, frag, seq, upto, tuple(missing))
