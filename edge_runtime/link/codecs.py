"""Tensor codecs for activations on the wire: fp32, fp16, per-channel affine int8, and the same
three entropy-coded (``fp32+z``, ``fp16+z``, ``int8+z``).

Encoded bytes describe themselves (network-order metadata, little-endian elements)::

    u8 codec id | u8 element dtype | u8 ndim | u8 channel axis (255: none) | u32 shape[ndim]
    | int8, int8+z: f32 scale[C] | f32 zero_point[C]
    | plain codecs: elements  |  +z codecs: coded block (see edge_runtime/link/entropy.py)

Integer arrays (labels, raw uint8 inputs) travel as blocks (``pack_ints``)::

    u8 dtype (0 int8, 1 int16, 2 int32, 3 int64, 4 uint8) | u8 ndim | u32 shape[ndim] | elements

``int8`` quantises each channel (axis 1 of NCHW, the last axis otherwise, the whole tensor for
0-d and 1-d) to 256 levels between its min and max: ``x ~= q * scale + zero_point``, q in 0..255.
A ``+z`` codec codes its base codec's elements losslessly (bit for bit), so ``fp32+z`` is
lossless and ``fp16+z``/``int8+z`` lose exactly what fp16/int8 lose. CODECS, the registry below,
is the one list every ``--codec`` option takes its choices from.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from edge_runtime.link import entropy
from edge_runtime.link.errors import ProtocolError


@dataclass(frozen=True)
class Codec:
    """One codec: how elements go on the wire, and whether they are entropy-coded."""

    name: str
    wire: np.dtype  # the element type before coding
    quantised: bool  # per-channel affine int8 (scale and zero point travel with the tensor)
    coded: bool  # elements entropy-coded (entropy.py)

    @property
    def lossless(self) -> bool:
        """Whether a float32 tensor comes back bit for bit."""
        return self.wire == np.dtype("<f4")

    @property
    def base(self) -> str:
        """The uncoded codec with the same elements (``int8+z`` -> ``int8``)."""
        return self.name.removesuffix("+z")


_F32, _F16, _U8 = np.dtype("<f4"), np.dtype("<f2"), np.dtype("u1")
# Ids are the wire's codec byte: append, never reorder.
REGISTRY: tuple[Codec, ...] = (
    Codec("fp32", _F32, False, False),
    Codec("fp16", _F16, False, False),
    Codec("int8", _U8, True, False),
    Codec("fp32+z", _F32, False, True),
    Codec("fp16+z", _F16, False, True),
    Codec("int8+z", _U8, True, True),
)
CODECS: tuple[str, ...] = tuple(c.name for c in REGISTRY)
LOSSLESS_CODECS: tuple[str, ...] = tuple(c.name for c in REGISTRY if c.lossless)
BY_NAME: dict[str, Codec] = {c.name: c for c in REGISTRY}

_CODEC_IDS = {name: i for i, name in enumerate(CODECS)}
_DTYPE_CODES = {_F32: 0, _F16: 1, _U8: 2}
_HEAD = struct.Struct("!BBBB")
_NO_AXIS = 255
_MAX_NDIM = 16


def parse_codecs(text: str) -> tuple[str, ...]:
    """Comma-separated codec names -> tuple; ValueError naming the valid ones."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [n for n in names if n not in BY_NAME]
    if bad or not names:
        raise ValueError(f"codec {text!r}: choose from {', '.join(CODECS)} (comma-separated)")
    return names


def channel_axis(ndim: int) -> int | None:
    """The axis int8 quantises per channel: 1 for NCHW, the last otherwise, none below 2-d."""
    if ndim == 4:
        return 1
    return ndim - 1 if ndim >= 2 else None


def encode_tensor(arr: np.ndarray, codec: str, compressor: str | None = None) -> bytes:
    """Encode a float tensor with ``codec`` (one of CODECS) into self-describing bytes.

    ``compressor`` (``+z`` codecs only) forces zstd, zlib or stored; None: this install's best.
    """
    spec = BY_NAME.get(codec)
    if spec is None:
        raise ValueError(f"unknown codec {codec!r}; valid: {', '.join(CODECS)}")
    x = np.asarray(arr)
    if x.ndim > _MAX_NDIM:
        raise ValueError(f"tensor has {x.ndim} dimensions, at most {_MAX_NDIM} are supported")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"cannot encode a tensor of dtype {x.dtype}")
    axis = channel_axis(x.ndim) if spec.quantised else None
    head = _HEAD.pack(
        _CODEC_IDS[codec],
        _DTYPE_CODES[spec.wire],
        x.ndim,
        _NO_AXIS if axis is None else axis,
    ) + struct.pack(f"!{x.ndim}I", *x.shape)
    if spec.quantised:
        params, elements = _quantise(x.astype(np.float32, copy=False), axis)
    else:
        params, elements = b"", np.ascontiguousarray(x, dtype=spec.wire)
    if spec.coded:
        bits = elements.view(f"u{spec.wire.itemsize}").ravel()
        return head + params + entropy.encode_block(bits, compressor)
    return head + params + elements.tobytes()


def decode_tensor(
    buf: bytes | bytearray | memoryview, max_inflated: int | None = None
) -> np.ndarray:
    """Decode bytes from encode_tensor into a writable float32 array.

    Raises ProtocolError if the bytes are inconsistent; the element count is checked against
    the bytes present (plain codecs) or against ``max_inflated`` (``+z`` codecs: the bytes the
    elements take before coding) before anything is allocated.
    """
    tensor, _codec = decode_tensor_with_codec(buf, max_inflated)
    return tensor


def decode_tensor_with_codec(
    buf: bytes | bytearray | memoryview, max_inflated: int | None = None
) -> tuple[np.ndarray, str]:
    """Like decode_tensor, and also return the name of the codec the bytes were encoded with."""
    view = memoryview(buf).cast("B")
    if len(view) < _HEAD.size:
        raise ProtocolError(f"tensor of {len(view)} bytes is shorter than its header")
    codec_id, dtype_code, ndim, axis = _HEAD.unpack_from(view)
    if codec_id >= len(CODECS):
        raise ProtocolError(f"unknown tensor codec id {codec_id}")
    spec = REGISTRY[codec_id]
    codec, wire = spec.name, spec.wire
    if _DTYPE_CODES[wire] != dtype_code or ndim > _MAX_NDIM:
        raise ProtocolError(f"bad tensor header: codec {codec}, dtype {dtype_code}, ndim {ndim}")
    offset = _HEAD.size + 4 * ndim
    if len(view) < offset:
        raise ProtocolError("tensor shape is truncated")
    shape = struct.unpack_from(f"!{ndim}I", view, _HEAD.size)
    count = 1
    for dim in shape:
        count *= dim
    channels = 0
    if spec.quantised:
        if axis == _NO_AXIS:
            channels = 1
        elif axis < ndim:
            channels = shape[axis]
        else:
            raise ProtocolError(f"int8 channel axis {axis} out of range for ndim {ndim}")
    start = offset + 8 * channels
    if spec.coded:
        if len(view) < start:
            raise ProtocolError(f"tensor {shape} {codec} is truncated in its parameters")
        bits, _compressor = entropy.decode_block(
            view[start:], count, np.dtype(f"u{wire.itemsize}"), max_inflated
        )
        elements = bits.view(wire)
    else:
        expected = start + count * wire.itemsize
        if len(view) != expected:
            raise ProtocolError(f"tensor {shape} {codec} needs {expected} bytes, got {len(view)}")
        elements = np.frombuffer(view, dtype=wire, count=count, offset=start)
    if not spec.quantised:
        return elements.astype(np.float32).reshape(shape), codec
    params = np.frombuffer(view, dtype="<f4", count=2 * channels, offset=offset)
    q = elements
    bshape = _broadcast_shape(len(shape), None if axis == _NO_AXIS else axis, channels)
    out = q.reshape(shape).astype(np.float32)
    out *= params[:channels].reshape(bshape)
    out += params[channels:].reshape(bshape)
    return out, codec


def codec_report(arr: np.ndarray) -> dict[str, dict[str, float]]:
    """Bytes, size ratio to fp32 and relative error ||x - dec(enc(x))|| / ||x|| per codec."""
    x = np.asarray(arr, dtype=np.float32)
    norm = float(np.linalg.norm(x))
    report: dict[str, dict[str, float]] = {}
    fp32_bytes = len(encode_tensor(x, "fp32"))
    for codec in CODECS:
        encoded = encode_tensor(x, codec)
        diff = float(np.linalg.norm(x - decode_tensor(encoded)))
        report[codec] = {
            "bytes": len(encoded),
            "ratio": len(encoded) / fp32_bytes,
            "rel_error": diff / norm if norm > 0 else diff,
        }
    return report


def _broadcast_shape(ndim: int, axis: int | None, channels: int) -> tuple[int, ...]:
    if axis is None:
        return (1,) * ndim if ndim else ()
    return tuple(channels if i == axis else 1 for i in range(ndim))


def _quantise(x: np.ndarray, axis: int | None) -> tuple[bytes, np.ndarray]:
    """(scale and zero point per channel as bytes, the uint8 codes)."""
    if x.size == 0:
        channels = 1 if axis is None else x.shape[axis]
        return np.zeros(2 * channels, dtype="<f4").tobytes(), np.zeros(0, dtype=np.uint8)
    if axis is None:
        lo = np.array([x.min()], dtype=np.float32)
        hi = np.array([x.max()], dtype=np.float32)
    else:
        reduce = tuple(i for i in range(x.ndim) if i != axis)
        lo = x.min(axis=reduce).astype(np.float32)
        hi = x.max(axis=reduce).astype(np.float32)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("int8 codec needs finite values; the tensor holds NaN or inf")
    scale = (hi - lo) / np.float32(255.0)
    scale[scale == 0] = 1.0  # a constant channel: any scale reproduces it exactly
    bshape = _broadcast_shape(x.ndim, axis, lo.size)
    # Divide, not multiply by 1/scale: a channel of denormals has a scale whose inverse is inf.
    q = np.atleast_1d((x - lo.reshape(bshape)) / scale.reshape(bshape))
    np.rint(q, out=q)
    np.clip(q, 0, 255, out=q)
    params = np.concatenate([scale, lo]).astype("<f4")
    return params.tobytes(), q.astype(np.uint8)


# -- integer blocks -----------------------------------------------------------------------------

_INT_DTYPES = [np.dtype(t) for t in ("i1", "<i2", "<i4", "<i8", "u1")]
_INT_HEAD = struct.Struct("!BB")


def pack_ints(arr: np.ndarray, compact: bool) -> bytes:
    """An integer array as a block; ``compact`` sends the smallest signed type that holds it."""
    x = np.asarray(arr)
    if x.dtype.kind not in "iu":
        raise ValueError(f"expected an integer array, got dtype {x.dtype}")
    dtype = x.dtype.newbyteorder("<") if x.dtype.itemsize > 1 else x.dtype
    if compact:
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        dtype = next(d for d in _INT_DTYPES[:4] if np.iinfo(d).min <= lo and hi <= np.iinfo(d).max)
    code = _INT_DTYPES.index(np.dtype(dtype))
    head = _INT_HEAD.pack(code, x.ndim) + struct.pack(f"!{x.ndim}I", *x.shape)
    return head + np.ascontiguousarray(x, dtype=dtype).tobytes()


def unpack_ints(view: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """The block at ``offset`` (a read-only view) and the offset after it; sizes checked first."""
    code, ndim = _INT_HEAD.unpack_from(view, offset)
    if code >= len(_INT_DTYPES) or ndim > _MAX_NDIM:
        raise ProtocolError(f"bad array block: dtype {code}, ndim {ndim}")
    offset += _INT_HEAD.size
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
