"""The model-out family: the edge's trained front + exit head, sent to the host after training.

Weights only, by their torch state-dict name (``Engine.export_weights``), never data. A model
that does not fit one frame goes as several MODEL_WEIGHTS messages (``part`` of ``parts``); each
carries the run's ``meta`` (input normalisation, class names, input shape), so the host can
assemble the model once every part is in. Importing this module registers the family.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import MsgType
from edge_runtime.link.messages import Message, dump_json, load_json, register

_LEN = struct.Struct("!I")
# A part stays well under the default 16 MiB frame, so a model never needs a bigger max_frame.
PART_BYTES = 4 * 1024 * 1024
_DTYPES = ("float32", "int64", "float64", "int32")


@register
@dataclass(eq=False)
class ModelWeights(Message):
    """u32 n | JSON {part, parts, meta, tensors: [[name, dtype, shape], ...]} | raw tensors."""

    TYPE: ClassVar[MsgType] = MsgType.MODEL_WEIGHTS
    part: int
    parts: int
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Payload: the JSON index, then each tensor's bytes (little-endian, C order)."""
        index = [[k, str(v.dtype), list(v.shape)] for k, v in self.tensors.items()]
        head = dump_json(
            {"part": self.part, "parts": self.parts, "meta": self.meta, "tensors": index}
        )
        body = b"".join(
            np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<")).tobytes()
            for v in self.tensors.values()
        )
        return _LEN.pack(len(head)) + head + body

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> ModelWeights:
        """Decode; every tensor's dtype, shape and byte count is checked against the index."""
        view = memoryview(payload)
        (n,) = _LEN.unpack_from(view)
        head = load_json(view[4 : 4 + n], dict[str, Any], "MODEL_WEIGHTS")
        offset, tensors = 4 + n, {}
        for entry in head.get("tensors", []):
            name, dtype, shape = entry
            if dtype not in _DTYPES or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ProtocolError(f"MODEL_WEIGHTS: tensor {name!r} has dtype {dtype}, {shape}")
            dt = np.dtype(dtype).newbyteorder("<")
            size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            if offset + size > len(view):
                raise ProtocolError(f"MODEL_WEIGHTS: tensor {name!r} runs past the payload")
            raw = np.frombuffer(view[offset : offset + size], dtype=dt)
            tensors[str(name)] = raw.astype(np.dtype(dtype)).reshape(shape)
            offset += size
        if offset != len(view):
            raise ProtocolError("MODEL_WEIGHTS: trailing bytes after the last tensor")
        part, parts = head.get("part"), head.get("parts")
        if not (isinstance(part, int) and isinstance(parts, int) and 0 <= part < parts):
            raise ProtocolError(f"MODEL_WEIGHTS: part {part!r} of {parts!r}")
        meta = head.get("meta", {})
        if not isinstance(meta, dict):
            raise ProtocolError("MODEL_WEIGHTS: meta must be a JSON object")
        return cls(part, parts, tensors, meta)


def weight_messages(
    weights: dict[str, np.ndarray], meta: dict[str, Any], part_bytes: int = PART_BYTES
) -> list[ModelWeights]:
    """The messages that carry `weights`: tensors in order, a new part past `part_bytes`."""
    groups: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, value in weights.items():
        if groups[-1] and size + value.nbytes > part_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = value
        size += value.nbytes
    return [ModelWeights(i, len(groups), g, meta) for i, g in enumerate(groups)]


def model_meta(dataset: Any, epoch: int) -> dict[str, Any]:
    """What the host needs besides weights to write a usable model: how inputs are normalised
    (x = (pixel / 255 - mean) / std, per channel, train-split statistics) and the class names."""
    return {
        "epoch": epoch,
        "data": dataset.name,
        "input_shape": list(dataset.x_train.shape[1:]),
        "classes": list(dataset.classes) or [str(i) for i in range(dataset.num_classes)],
        "normalisation": {
            "pixel_scale": 1 / 255,
            "mean": [float(v) for v in dataset.mean],
            "std": [float(v) for v in dataset.std],
        },
    }
