"""Message types, the frame header, and each message's payload layout.

Header (network order, 16 bytes): version u8 | type u8 | flags u16 | seq u32 | ack u32 | length u32.
Payload layouts are documented on each message class and in docs/protocol.md.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

from edge_runtime.link.codecs import BY_NAME, decode_tensor_with_codec, encode_tensor
from edge_runtime.link.errors import FrameError, ProtocolError

PROTOCOL_VERSION = 1

HEADER = struct.Struct("!BBHIII")
FLAG_RETRANSMIT = 0x0001


class MsgType(IntEnum):
    """Message type codes (the header's type byte)."""

    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    BATCH = 16
    EVAL_BATCH = 17
    EPOCH_END = 18
    METRICS = 19
    ERROR = 20
    BYE = 21
    ACK = 32
    NACK = 33
    KEEPALIVE = 34
    GRAD = 48
    RAW_BATCH = 49
    FILE_CHUNK = 50


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


# -- array blocks -------------------------------------------------------------------------------

_INT_DTYPES = [np.dtype(t) for t in ("i1", "<i2", "<i4", "<i8", "u1")]
_ARRAY_HEAD = struct.Struct("!BB")


def _pack_ints(arr: np.ndarray, compact: bool) -> bytes:
    """u8 dtype | u8 ndim | u32 shape[ndim] | little-endian elements; labels shrink to fit."""
    x = np.asarray(arr)
    if x.dtype.kind not in "iu":
        raise ValueError(f"expected an integer array, got dtype {x.dtype}")
    dtype = x.dtype.newbyteorder("<") if x.dtype.itemsize > 1 else x.dtype
    if compact:
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        dtype = next(d for d in _INT_DTYPES[:4] if np.iinfo(d).min <= lo and hi <= np.iinfo(d).max)
    code = _INT_DTYPES.index(np.dtype(dtype))
    head = _ARRAY_HEAD.pack(code, x.ndim) + struct.pack(f"!{x.ndim}I", *x.shape)
    return head + np.ascontiguousarray(x, dtype=dtype).tobytes()


def _unpack_ints(view: memoryview, offset: int) -> tuple[np.ndarray, int]:
    code, ndim = _ARRAY_HEAD.unpack_from(view, offset)
    if code >= len(_INT_DTYPES) or ndim > 16:
        raise ProtocolError(f"bad array block: dtype {code}, ndim {ndim}")
    offset += _ARRAY_HEAD.size
    shape = struct.unpack_from(f"!{ndim}I", view, offset)
    offset += 4 * ndim
    dtype = _INT_DTYPES[code]
    count = 1
    for dim in shape:
        count *= dim
    end = offset + count * dtype.itemsize
    if end > len(view):
        raise ProtocolError(
            f"array block {shape} needs {end - offset} bytes, {len(view) - offset} left"
        )
    arr = np.frombuffer(view, dtype=dtype, count=count, offset=offset).reshape(shape)
    return arr, end


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _unjson(view: memoryview | bytes) -> Any:
    return json.loads(bytes(view).decode())


# -- messages -----------------------------------------------------------------------------------


@dataclass
class Message:
    """Base of every message. ``seq`` is set on received sequenced messages."""

    TYPE: ClassVar[MsgType]
    SEQUENCED: ClassVar[bool] = True
    # Carries an activation tensor: decode takes ``max_inflated`` (the bound on a coded tensor).
    TENSOR: ClassVar[bool] = False
    seq: int = field(default=0, kw_only=True, compare=False)

    def encode(self) -> bytes:
        """The payload bytes of this message."""
        raise NotImplementedError

    @property
    def inflated_bytes(self) -> int:
        """Bytes the receiver's decoded tensor elements take before coding (0: no tensor).

        A sender checks it against the negotiated max_frame as the receiver will (decode_message)."""
        tensor = getattr(self, "tensor", None) if self.TENSOR else None
        if tensor is None:
            return 0
        return int(np.asarray(tensor).size) * BY_NAME[self.codec].wire.itemsize  # type: ignore[attr-defined]

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Message:
        """Build the message from its payload bytes."""
        raise NotImplementedError


@dataclass(eq=False)
class Batch(Message):
    """Activations of one training batch: u32 epoch | u32 index | labels block | tensor."""

    TYPE: ClassVar[MsgType] = MsgType.BATCH
    TENSOR: ClassVar[bool] = True
    epoch: int
    index: int
    labels: np.ndarray
    tensor: np.ndarray
    codec: str = "fp32"
    wire_bytes: int = field(default=0, kw_only=True, compare=False)

    def encode(self) -> bytes:
        """Payload: epoch, index, labels (smallest int type that fits), encoded tensor."""
        head = struct.pack("!II", self.epoch, self.index)
        return head + _pack_ints(self.labels, compact=True) + encode_tensor(self.tensor, self.codec)

    @classmethod
    def decode(cls, payload: memoryview | bytes, max_inflated: int | None = None) -> Batch:
        """Decode; labels come back int64, the tensor float32; ``wire_bytes`` is the payload size.

        ``max_inflated`` bounds a coded tensor's elements before coding (ProtocolError beyond).
        """
        view = memoryview(payload)
        epoch, index = struct.unpack_from("!II", view)
        labels, offset = _unpack_ints(view, 8)
        tensor, codec = decode_tensor_with_codec(view[offset:], max_inflated)
        return cls(epoch, index, labels.astype(np.int64), tensor, codec, wire_bytes=len(view))


@dataclass(eq=False)
class EvalBatch(Batch):
    """Activations of one evaluation batch; same layout as Batch."""

    TYPE: ClassVar[MsgType] = MsgType.EVAL_BATCH


@dataclass(eq=False)
class Grad(Message):
    """Gradient at the cut (split-learning baseline): u32 epoch | u32 index | tensor."""

    TYPE: ClassVar[MsgType] = MsgType.GRAD
    TENSOR: ClassVar[bool] = True
    epoch: int
    index: int
    tensor: np.ndarray
    codec: str = "fp32"

    def encode(self) -> bytes:
        """Payload: epoch, index, encoded tensor."""
        return struct.pack("!II", self.epoch, self.index) + encode_tensor(self.tensor, self.codec)

    @classmethod
    def decode(cls, payload: memoryview | bytes, max_inflated: int | None = None) -> Grad:
        """Decode; the tensor comes back float32 (``max_inflated`` as in Batch.decode)."""
        view = memoryview(payload)
        epoch, index = struct.unpack_from("!II", view)
        tensor, codec = decode_tensor_with_codec(view[8:], max_inflated)
        return cls(epoch, index, tensor, codec)


@dataclass(eq=False)
class RawBatch(Message):
    """Raw inputs (cloud-only baseline): u32 epoch | u32 index | labels block | uint8 data block."""

    TYPE: ClassVar[MsgType] = MsgType.RAW_BATCH
    epoch: int
    index: int
    labels: np.ndarray
    data: np.ndarray

    def encode(self) -> bytes:
        """Payload: epoch, index, labels, data as uint8."""
        data = np.asarray(self.data)
        if data.dtype != np.uint8:
            raise ValueError(f"RawBatch data must be uint8, got {data.dtype}")
        head = struct.pack("!II", self.epoch, self.index)
        return head + _pack_ints(self.labels, compact=True) + _pack_ints(data, compact=False)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> RawBatch:
        """Decode; labels come back int64, data uint8."""
        view = memoryview(payload)
        epoch, index = struct.unpack_from("!II", view)
        labels, offset = _unpack_ints(view, 8)
        data, end = _unpack_ints(view, offset)
        if end != len(view) or data.dtype != np.uint8:
            raise ProtocolError("RawBatch payload has trailing bytes or non-uint8 data")
        return cls(epoch, index, labels.astype(np.int64), data.copy())


@dataclass
class FileChunk(Message):
    """A piece of a file: u16 len | path | u64 offset | u64 total | u8 len | sha256 hex | data.

    ``sha256`` (hex) is set on the last chunk only.
    """

    TYPE: ClassVar[MsgType] = MsgType.FILE_CHUNK
    path: str
    offset: int
    total: int
    data: bytes
    sha256: str = ""

    def encode(self) -> bytes:
        """Payload as in the class docstring."""
        path = self.path.encode()
        sha = self.sha256.encode()
        return (
            struct.pack("!H", len(path))
            + path
            + struct.pack("!QQB", self.offset, self.total, len(sha))
            + sha
            + bytes(self.data)
        )

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> FileChunk:
        """Decode the chunk."""
        view = memoryview(payload)
        (plen,) = struct.unpack_from("!H", view)
        path = bytes(view[2 : 2 + plen]).decode()
        offset, total, slen = struct.unpack_from("!QQB", view, 2 + plen)
        start = 2 + plen + 17
        sha = bytes(view[start : start + slen]).decode()
        return cls(path, offset, total, bytes(view[start + slen :]), sha)


@dataclass
class EpochEnd(Message):
    """End of an epoch on the edge: u32 epoch | JSON metrics."""

    TYPE: ClassVar[MsgType] = MsgType.EPOCH_END
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Payload: epoch, then the metrics as JSON."""
        return struct.pack("!I", self.epoch) + _json(self.metrics)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> EpochEnd:
        """Decode."""
        view = memoryview(payload)
        (epoch,) = struct.unpack_from("!I", view)
        return cls(epoch, _unjson(view[4:]))


@dataclass
class Metrics(Message):
    """Free-form metrics: JSON object."""

    TYPE: ClassVar[MsgType] = MsgType.METRICS
    data: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Payload: JSON."""
        return _json(self.data)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Metrics:
        """Decode."""
        return cls(_unjson(payload))


@dataclass
class Error(Message):
    """An error the peer must know about: JSON {"code", "message"}.

    Sent unsequenced during the handshake (codes "auth", "version", "bundle", "protocol"),
    sequenced afterwards.
    """

    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: str
    message: str

    def encode(self) -> bytes:
        """Payload: JSON."""
        return _json({"code": self.code, "message": self.message})

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Error:
        """Decode."""
        obj = _unjson(payload)
        return cls(str(obj["code"]), str(obj["message"]))


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


@dataclass
class Hello(Message):
    """First frame from the edge: JSON {version, edge_id, run_id, bundle_sha256, max_frame}."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    SEQUENCED: ClassVar[bool] = False
    version: int
    edge_id: str
    run_id: str
    bundle_sha256: str
    max_frame: int

    def encode(self) -> bytes:
        """Payload: JSON."""
        return _json(
            {
                "version": self.version,
                "edge_id": self.edge_id,
                "run_id": self.run_id,
                "bundle_sha256": self.bundle_sha256,
                "max_frame": self.max_frame,
            }
        )

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Hello:
        """Decode."""
        o = _unjson(payload)
        return cls(
            int(o["version"]),
            str(o["edge_id"]),
            str(o["run_id"]),
            str(o["bundle_sha256"]),
            int(o["max_frame"]),
        )


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
        if len(payload) != 32:
            raise ProtocolError(f"challenge nonce is {len(payload)} bytes, expected 32")
        return cls(bytes(payload))


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
        if len(payload) != 32:
            raise ProtocolError(f"auth digest is {len(payload)} bytes, expected 32")
        return cls(bytes(payload))


@dataclass
class Welcome(Message):
    """Session accepted: JSON {cursor, received, max_frame, resume}.

    ``cursor``: highest seq the host application has consumed; ``received``: highest seq the
    host has already handed to its application (>= cursor); ``max_frame``: the negotiated
    maximum frame body; ``resume``: application resume info.
    """

    TYPE: ClassVar[MsgType] = MsgType.WELCOME
    SEQUENCED: ClassVar[bool] = False
    cursor: int
    resume: dict[str, Any] = field(default_factory=dict)
    received: int = 0
    max_frame: int = 0

    def encode(self) -> bytes:
        """Payload: JSON."""
        return _json(
            {
                "cursor": self.cursor,
                "received": self.received,
                "max_frame": self.max_frame,
                "resume": self.resume,
            }
        )

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Welcome:
        """Decode."""
        o = _unjson(payload)
        return cls(int(o["cursor"]), dict(o["resume"]), int(o["received"]), int(o["max_frame"]))


_ACK = struct.Struct("!II")


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


MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Challenge,
        Auth,
        Welcome,
        Batch,
        EvalBatch,
        EpochEnd,
        Metrics,
        Error,
        Bye,
        Ack,
        Nack,
        Keepalive,
        Grad,
        RawBatch,
        FileChunk,
    )
}


def decode_message(
    header: Header, payload: memoryview | bytes, max_inflated: int | None = None
) -> Message:
    """Decode the payload of a frame whose header has been checked; ProtocolError if malformed.

    ``max_inflated``: the most bytes a coded tensor may inflate to (the negotiated max_frame, so
    that a coded frame never costs more memory than an uncoded one could); None: unbounded.
    """
    cls = MESSAGE_CLASSES.get(header.type)
    if cls is None:
        raise ProtocolError(f"unknown message type {header.type}")
    try:
        msg = cls.decode(payload, max_inflated) if cls.TENSOR else cls.decode(payload)
    except ProtocolError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed {cls.TYPE.name} payload: {exc}") from exc
    msg.seq = header.seq
    return msg


def encode_message(msg: Message, seq: int = 0, ack: int = 0, flags: int = 0) -> bytes:
    """Header and payload of ``msg``: the body a frame carries."""
    payload = msg.encode()
    header = Header(type=msg.TYPE, seq=seq, ack=ack, flags=flags, length=len(payload))
    return header.pack() + payload
