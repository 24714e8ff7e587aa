"""The model-out family: the edge's front + exit head as weights, never data.

Weights only, by their torch state-dict name (``Engine.export_weights``). A model that does not
fit one frame goes as several MODEL_WEIGHTS messages (``part`` of ``parts``). Two uses, one
message:

- ``round == 0``: the edge's trained model after training, up; each part carries the run's
  ``meta`` (input normalisation, class names, input shape), so the host can assemble the model
  once every part is in.
- ``round > 0``: front averaging in a shared-tail fleet (``hostctl serve --shared-tail
  --average-fronts-every``). Up: this edge's front + exit at the boundary of averaging round
  ``round``, with the ``samples`` it trained since its last round (the FedAvg weight) and
  ``last`` on its final round. Down: the averaged front + exit of front version ``round``,
  ``samples`` the round's total. The round fields travel only when ``round > 0``, so a model
  out is the same bytes as before them.

Importing this module registers the family.
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
    """u32 n | JSON {part, parts, meta, tensors: [[name, dtype, shape], ...][, round, samples,
    last]} | raw tensors."""

    TYPE: ClassVar[MsgType] = MsgType.MODEL_WEIGHTS
    part: int
    parts: int
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    round: int = 0  # 0: a model out; > 0: a front-averaging round (see the module's docstring)
    samples: int = 0
    last: bool = False

    def encode(self) -> bytes:
        """Payload: the JSON index, then each tensor's bytes (little-endian, C order)."""
        index = [[k, str(v.dtype), list(v.shape)] for k, v in self.tensors.items()]
        fields_ = {"part": self.part, "parts": self.parts, "meta": self.meta, "tensors": index}
        if self.round:  # left out at 0: a model out keeps the bytes of peers before averaging
            fields_.update(round=self.round, samples=self.samples, last=self.last)
        head = dump_json(fields_)
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
        round_, samples, last = (
            head.get("round", 0),
            head.get("samples", 0),
            head.get("last", False),
        )
        if not (_count(round_) and _count(samples) and isinstance(last, bool)):
            raise ProtocolError(
                f"MODEL_WEIGHTS: round {round_!r}, samples {samples!r}, last {last!r}"
            )
        return cls(part, parts, tensors, meta, round_, samples, last)

    @property
    def nbytes(self) -> int:
        """The tensors' bytes (what a report counts as weights on the wire, framing aside)."""
        return sum(int(v.nbytes) for v in self.tensors.values())


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def weight_messages(
    weights: dict[str, np.ndarray],
    meta: dict[str, Any],
    part_bytes: int = PART_BYTES,
    *,
    round: int = 0,  # noqa: A002 - the message's field
    samples: int = 0,
    last: bool = False,
) -> list[ModelWeights]:
    """The messages that carry `weights`: tensors in order, a new part past `part_bytes`.

    `round`, `samples`, `last`: a front-averaging round's weights (0: a model out)."""
    groups: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, value in weights.items():
        if groups[-1] and size + value.nbytes > part_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = value
        size += value.nbytes
    return [
        ModelWeights(i, len(groups), g, meta, round, samples, last) for i, g in enumerate(groups)
    ]


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
