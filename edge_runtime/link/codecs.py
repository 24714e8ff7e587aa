"""Tensor codecs for activations on the wire: fp32, fp16 and per-channel affine int8.

Encoded bytes describe themselves (network-order metadata, little-endian elements)::

    u8 codec id | u8 element dtype | u8 ndim | u8 channel axis (255: none) | u32 shape[ndim]
    | int8 only: f32 scale[C] | f32 zero_point[C] |  elements

Integer arrays (labels, raw uint8 inputs) travel as blocks (``pack_ints``)::

    u8 dtype (0 int8, 1 int16, 2 int32, 3 int64, 4 uint8) | u8 ndim | u32 shape[ndim] | elements

``int8`` quantises each channel (axis 1 of NCHW, the last axis otherwise, the whole tensor for
0-d and 1-d) to 256 levels between its min and max: ``x ~= q * scale + zero_point``, q in 0..255.
"""

from __future__ import annotations

import struct

import numpy as np

from edge_runtime.link.errors import ProtocolError

CODECS: tuple[str, ...] = ("fp32", "fp16", "int8")

_CODEC_IDS = {name: i for i, name in enumerate(CODECS)}
_WIRE_DTYPE = {"fp32": np.dtype("<f4"), "fp16": np.dtype("<f2"), "int8": np.dtype("u1")}
_DTYPE_CODES = {np.dtype("<f4"): 0, np.dtype("<f2"): 1, np.dtype("u1"): 2}
_HEAD = struct.Struct("!BBBB")
_NO_AXIS = 255
_MAX_NDIM = 16


def channel_axis(ndim: int) -> int | None:
    """The axis int8 quantises per channel: 1 for NCHW, the last otherwise, none below 2-d."""
    if ndim == 4:
        return 1
    return ndim - 1 if ndim >= 2 else None


def encode_tensor(arr: np.ndarray, codec: str) -> bytes:
    """Encode a float tensor with ``codec`` (one of CODECS) into self-describing bytes."""
    if codec not in _CODEC_IDS:
        raise ValueError(f"unknown codec {codec!r}; valid: {', '.join(CODECS)}")
    x = np.asarray(arr)
    if x.ndim > _MAX_NDIM:
        raise ValueError(f"tensor has {x.ndim} dimensions, at most {_MAX_NDIM} are supported")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"cannot encode a tensor of dtype {x.dtype}")
    axis = channel_axis(x.ndim) if codec == "int8" else None
    head = _HEAD.pack(
        _CODEC_IDS[codec],
        _DTYPE_CODES[_WIRE_DTYPE[codec]],
        x.ndim,
        _NO_AXIS if axis is None else axis,
    ) + struct.pack(f"!{x.ndim}I", *x.shape)
    if codec == "int8":
        return head + _quantise(x.astype(np.float32, copy=False), axis)
    return head + np.ascontiguousarray(x, dtype=_WIRE_DTYPE[codec]).tobytes()


def decode_tensor(buf: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode bytes from encode_tensor into a writable float32 array.

    Raises ProtocolError if the bytes are inconsistent; the element count is checked against
    the bytes present before anything is allocated.
    """
    tensor, _codec = decode_tensor_with_codec(buf)
    return tensor


def decode_tensor_with_codec(buf: bytes | bytearray | memoryview) -> tuple[np.ndarray, str]:
    """Like decode_tensor, and also return the name of the codec the bytes were encoded with."""
    view = memoryview(buf).cast("B")
    if len(view) < _HEAD.size:
        raise ProtocolError(f"tensor of {len(view)} bytes is shorter than its header")
    codec_id, dtype_code, ndim, axis = _HEAD.unpack_from(view)
    if codec_id >= len(CODECS):
        raise ProtocolError(f"unknown tensor codec id {codec_id}")
    codec = CODECS[codec_id]
    wire = _WIRE_DTYPE[codec]
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
    if codec == "int8":
        if axis == _NO_AXIS:
            channels = 1
        elif axis < ndim:
            channels = shape[axis]
        else:
            raise ProtocolError(f"int8 channel axis {axis} out of range for ndim {ndim}")
    expected = offset + 8 * channels + count * wire.itemsize
    if len(view) != expected:
        raise ProtocolError(f"tensor {shape} {codec} needs {expected} bytes, got {len(view)}")
    if codec != "int8":
        data = np.frombuffer(view, dtype=wire, count=count, offset=offset)
        return data.astype(np.float32).reshape(shape), codec
    params = np.frombuffer(view, dtype="<f4", count=2 * channels, offset=offset)
    q = np.frombuffer(view, dtype=wire, count=count, offset=offset + 8 * channels)
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


def _quantise(x: np.ndarray, axis: int | None) -> bytes:
    if x.size == 0:
        channels = 1 if axis is None else x.shape[axis]
        return np.zeros(2 * channels, dtype="<f4").tobytes()
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
    q = np.atleast_1d((x - lo.reshape(bshape)) * (np.float32(1.0) / scale).reshape(bshape))
    np.rint(q, out=q)
    np.clip(q, 0, 255, out=q)
    params = np.concatenate([scale, lo]).astype("<f4")
    return params.tobytes() + q.astype(np.uint8).tobytes()


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
