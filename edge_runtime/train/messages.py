"""The training family of messages: what an edge run and the cloud trainer say to each other.

Layouts (docs/protocol.md section 3) are on each class; integer blocks and tensors are the
link's codecs. Importing this module registers the family with the link.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
from edge_runtime.link.messages import JsonMessage, Message, dump_json, load_json, register

RAW_TRAIN, RAW_TEST = 0, 1  # RawBatch.raw_set: which data set a raw batch belongs to

_IDS = struct.Struct("!II")
# BATCH's optional front version: a tag no labels block starts with (its dtype codes are 0-4),
# then u32. Left out for version 0, so a batch of the bundle's front is the bytes it was before.
_FRONT_TAG, _FRONT = 0xFE, struct.Struct("!BI")


# A batch message's bytes besides its tensor's elements: ids, the front version, the codec's
# header and scale, the frame header; generous, so that a batch that fits really does.
_BATCH_OVERHEAD = 4096


def samples_per_message(activation_shape: tuple[int, ...], codec: str, max_frame: int) -> int:
    """How many samples' activations (and labels) one Batch or EvalBatch may carry under
    `max_frame`: the receiver bounds a message by its elements' size before entropy coding."""
    per_sample = int(np.prod(activation_shape)) * BY_NAME[codec].wire.itemsize + 8  # + a label
    return max(0, (max_frame - _BATCH_OVERHEAD) // per_sample)


@register
@dataclass(eq=False)
class Batch(Message):
    """Activations of one training batch:
    u32 epoch | u32 index | [u8 0xFE | u32 front_version] | labels block | tensor.

    ``front_version``: which front produced the activation (0: the bundle's; v > 0: the edge
    had adopted averaged front v, see ``edge_runtime/train/averaging.py``).
    """

    TYPE: ClassVar[MsgType] = MsgType.BATCH
    TENSOR: ClassVar[bool] = True
    epoch: int
    index: int
    labels: np.ndarray
    tensor: np.ndarray
    codec: str = "fp32"
    front_version: int = field(default=0, kw_only=True)
    wire_bytes: int = field(default=0, kw_only=True, compare=False)

    def encode(self) -> bytes:
        """Payload: epoch, index, [front version], labels (smallest int type that fits), tensor."""
        head = _IDS.pack(self.epoch, self.index)
        if self.front_version:
            head += _FRONT.pack(_FRONT_TAG, self.front_version)
        return head + pack_ints(self.labels, compact=True) + encode_tensor(self.tensor, self.codec)

    @property
    def inflated_bytes(self) -> int:
        """Bytes of the tensor's elements before entropy coding, as the receiver bounds them."""
        return int(np.asarray(self.tensor).size) * BY_NAME[self.codec].wire.itemsize

    @classmethod
    def decode(cls, payload: memoryview | bytes, max_inflated: int | None = None) -> Batch:
        """Decode; labels come back int64, the tensor float32; ``wire_bytes`` is the payload size.

        ``max_inflated`` bounds a coded tensor's elements before coding (ProtocolError beyond).
        """
        view = memoryview(payload)
        epoch, index = _IDS.unpack_from(view)
        offset, front_version = _IDS.size, 0
        if len(view) > offset and view[offset] == _FRONT_TAG:
            _, front_version = _FRONT.unpack_from(view, offset)
            offset += _FRONT.size
        labels, offset = unpack_ints(view, offset)
        tensor, codec = decode_tensor_with_codec(view[offset:], max_inflated)
        return cls(
            epoch,
            index,
            labels.astype(np.int64),
            tensor,
            codec,
            front_version=front_version,
            wire_bytes=len(view),
        )


@register
@dataclass(eq=False)
class EvalBatch(Batch):
    """Activations of one evaluation batch; same layout as Batch."""

    TYPE: ClassVar[MsgType] = MsgType.EVAL_BATCH


@register
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
        return _IDS.pack(self.epoch, self.index) + encode_tensor(self.tensor, self.codec)

    @property
    def inflated_bytes(self) -> int:
        """Bytes of the tensor's elements before entropy coding, as the receiver bounds them."""
        return int(np.asarray(self.tensor).size) * BY_NAME[self.codec].wire.itemsize

    @classmethod
    def decode(cls, payload: memoryview | bytes, max_inflated: int | None = None) -> Grad:
        """Decode; the tensor comes back float32 (``max_inflated`` as in Batch.decode)."""
        view = memoryview(payload)
        epoch, index = _IDS.unpack_from(view)
        tensor, codec = decode_tensor_with_codec(view[_IDS.size :], max_inflated)
        return cls(epoch, index, tensor, codec)


@register
@dataclass(eq=False)
class RawBatch(Message):
    """Raw inputs (cloud-only baseline): u32 raw_set | u32 index | labels block | uint8 block.

    ``raw_set`` says which data set the batch is part of: RAW_TRAIN or RAW_TEST.
    """

    TYPE: ClassVar[MsgType] = MsgType.RAW_BATCH
    raw_set: int
    index: int
    labels: np.ndarray
    data: np.ndarray

    def encode(self) -> bytes:
        """Payload: set, index, labels, data as uint8."""
        data = np.asarray(self.data)
        if data.dtype != np.uint8:
            raise ValueError(f"RawBatch data must be uint8, got {data.dtype}")
        head = _IDS.pack(self.raw_set, self.index)
        return head + pack_ints(self.labels, compact=True) + pack_ints(data, compact=False)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> RawBatch:
        """Decode; labels come back int64, data uint8."""
        view = memoryview(payload)
        raw_set, index = _IDS.unpack_from(view)
        labels, offset = unpack_ints(view, _IDS.size)
        data, end = unpack_ints(view, offset)
        if end != len(view) or data.dtype != np.uint8:
            raise ProtocolError("RawBatch payload has trailing bytes or non-uint8 data")
        return cls(raw_set, index, labels.astype(np.int64), data.copy())


@register
@dataclass
class UploadDone(JsonMessage):
    """Cloud-only baseline: the raw data sets are all sent; how the host should train on them.

    JSON {epochs, batch_size, seed, augment, num_classes}.
    """

    TYPE: ClassVar[MsgType] = MsgType.UPLOAD_DONE
    epochs: int
    batch_size: int
    seed: int
    augment: bool
    num_classes: int


@register
@dataclass
class EpochEnd(Message):
    """End of an epoch on the edge: u32 epoch | JSON metrics."""

    TYPE: ClassVar[MsgType] = MsgType.EPOCH_END
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Payload: epoch, then the metrics as JSON."""
        return struct.pack("!I", self.epoch) + dump_json(self.metrics)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> EpochEnd:
        """Decode."""
        view = memoryview(payload)
        (epoch,) = struct.unpack_from("!I", view)
        return cls(epoch, load_json(view[4:], dict[str, Any], "EPOCH_END metrics"))


@register
@dataclass
class Metrics(Message):
    """Figures the host sends back (per epoch, per run): one JSON object, free-form."""

    TYPE: ClassVar[MsgType] = MsgType.METRICS
    data: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Payload: the JSON object."""
        return dump_json(self.data)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Metrics:
        """Decode."""
        return cls(load_json(payload, dict[str, Any], "METRICS"))
