"""The inference family: activations of the samples the edge does not answer, and the host's
answers. Importing this module registers the family with the link."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from edge_runtime.link.codecs import (
    BY_NAME,
    decode_tensor_with_codec,
    encode_tensor,
    pack_ints,
    unpack_ints,
)
from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import MsgType
from edge_runtime.link.messages import Message, register

_ID = struct.Struct("!I")


@register
@dataclass(eq=False)
class InferRequest(Message):
    """Activations of samples first_id, first_id + 1, ...: u32 first_id | tensor."""

    TYPE: ClassVar[MsgType] = MsgType.INFER_REQUEST
    TENSOR: ClassVar[bool] = True
    first_id: int
    tensor: np.ndarray
    codec: str = "fp32"
    wire_bytes: int = field(default=0, kw_only=True, compare=False)

    def encode(self) -> bytes:
        """Payload: the first sample's id, the encoded activations."""
        return _ID.pack(self.first_id) + encode_tensor(self.tensor, self.codec)

    @property
    def inflated_bytes(self) -> int:
        """Bytes of the tensor's elements before entropy coding, as the receiver bounds them."""
        return int(np.asarray(self.tensor).size) * BY_NAME[self.codec].wire.itemsize

    @classmethod
    def decode(cls, payload: memoryview | bytes, max_inflated: int | None = None) -> InferRequest:
        """Decode; the tensor comes back float32."""
        view = memoryview(payload)
        (first,) = _ID.unpack_from(view)
        tensor, codec = decode_tensor_with_codec(view[_ID.size :], max_inflated)
        return cls(first, tensor, codec, wire_bytes=len(view))


@register
@dataclass(eq=False)
class InferAnswer(Message):
    """The host's class for samples first_id, first_id + 1, ...: u32 first_id | int block."""

    TYPE: ClassVar[MsgType] = MsgType.INFER_ANSWER
    first_id: int
    classes: np.ndarray

    def encode(self) -> bytes:
        """Payload: the first sample's id, the classes (smallest int type that fits)."""
        return _ID.pack(self.first_id) + pack_ints(np.asarray(self.classes, np.int64), compact=True)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> InferAnswer:
        """Decode; classes come back int64."""
        view = memoryview(payload)
        (first,) = _ID.unpack_from(view)
        classes, end = unpack_ints(view, _ID.size)
        if end != len(view) or classes.ndim != 1:
            raise ProtocolError("INFER_ANSWER: trailing bytes or classes that are not a list")
        return cls(first, classes.astype(np.int64))
