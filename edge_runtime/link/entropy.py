"""Lossless coding of a tensor's elements: a sparse or dense layout, then a byte compressor.

Coded block (network order), what the ``+z`` codecs put where the raw elements would be::

    u8 compressor (0 stored, 1 zlib, 2 zstd) | u8 layout (0 dense, 1 sparse)
    | sparse only: u32 nonzero count | compressed stream (to the end of the tensor)

The stream inflates to, for ``dense``, the elements with their bytes split into planes (every
element's byte 0, then every byte 1, ...: exponent bytes of floats sit together and compress
well), and for ``sparse``, a bitmask with one bit per element (1: the element's bits are not all
zero; ``np.packbits`` order) followed by the nonzero elements, byte-planed the same way.
Zero means all bits zero, so -0.0, NaN and denormals travel as they are: the coding is bit-exact.

The layout is chosen per tensor: sparse when the bitmask form is smaller than the dense form
before compression (more than 1/(8 x element size) of the elements are zero); on ResNet-18 and
the small CNN's activations that rule picked the smaller coded form or one within 0.3 %.
The compressor is zstd (level 1) when the ``zstandard`` package is installed, else the
standard library's zlib (level 1); a stream that does not shrink is stored. The decoder takes
any of the three, whichever the sender had.

Decoding is bounded: the inflated size follows from the tensor's shape (and the nonzero count)
and is checked against the caller's limit before anything is allocated; the decompressor is
then held to exactly that size.
"""

from __future__ import annotations

import struct
import threading
import zlib
from typing import Any

import numpy as np

from edge_runtime.link.errors import ProtocolError

try:  # the `edge`, `edge-torch` and `host` extras install it; a bare board codes with zlib
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the install
    _zstd = None

STORED, ZLIB, ZSTD = 0, 1, 2
COMPRESSOR_NAMES = {STORED: "stored", ZLIB: "zlib", ZSTD: "zstd"}
DENSE, SPARSE = 0, 1
_HEAD = struct.Struct("!BB")
_NONZERO = struct.Struct("!I")
_ZSTD_LEVEL = 1  # measured: within 1 % of zlib-6's bytes at 4-40x its speed (docs/results.md)
_ZLIB_LEVEL = 1

_local = threading.local()  # zstd contexts are not thread-safe: one per thread


def compressor_name() -> str:
    """The compressor this install codes with: ``zstd`` or (fallback) ``zlib``."""
    return "zstd" if _zstd is not None else "zlib"


def _zstd_compressor() -> Any:
    # Kept per thread: creating a context costs more than coding a small tensor.
    ctx = getattr(_local, "zstd", None)
    if ctx is None:
        ctx = _local.zstd = _zstd.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True)
    return ctx


def sparse_wins(count: int, nonzero: int, itemsize: int) -> bool:
    """Whether the bitmask form (count/8 + nonzero elements) is smaller than the dense form."""
    return (count + 7) // 8 + nonzero * itemsize < count * itemsize


def inflated_size(count: int, itemsize: int, layout: int, nonzero: int) -> int:
    """Bytes the stream of a block inflates to."""
    if layout == SPARSE:
        return (count + 7) // 8 + nonzero * itemsize
    return count * itemsize


def _planes(elements: np.ndarray, itemsize: int) -> np.ndarray:
    """Element bytes as planes: (n, k) bytes -> (k, n), flattened."""
    if itemsize == 1:
        return elements.view(np.uint8)
    return elements.view(np.uint8).reshape(-1, itemsize).T.ravel()


def encode_block(elements: np.ndarray, compressor: str | None = None) -> bytes:
    """Code a 1-d array of unsigned integers (the raw element bits) as a coded block.

    ``compressor`` forces ``"zstd"``, ``"zlib"`` or ``"stored"`` (tests, benchmarks); None takes
    this install's (``compressor_name()``).
    """
    bits = np.ascontiguousarray(elements).ravel()
    itemsize = bits.dtype.itemsize
    count = bits.size
    nonzero_mask = bits != 0
    nonzero = int(np.count_nonzero(nonzero_mask))
    if sparse_wins(count, nonzero, itemsize):
        layout = SPARSE
        stream = np.concatenate([np.packbits(nonzero_mask), _planes(bits[nonzero_mask], itemsize)])
        extra = _NONZERO.pack(nonzero)
    else:
        layout, stream, extra = DENSE, _planes(bits, itemsize), b""
    raw = memoryview(stream).cast("B")
    name = compressor or compressor_name()
    if name == "zstd":
        method, packed = ZSTD, _zstd_compressor().compress(raw)
    elif name == "zlib":
        method, packed = ZLIB, zlib.compress(raw, _ZLIB_LEVEL)
    elif name == "stored":
        method, packed = STORED, bytes(raw)
    else:
        raise ValueError(f"unknown compressor {name!r}; valid: zstd, zlib, stored")
    if len(packed) >= len(raw):  # incompressible (noise): send it as it is
        method, packed = STORED, bytes(raw)
    return _HEAD.pack(method, layout) + extra + packed


def decode_block(
    view: memoryview, count: int, dtype: np.dtype, max_inflated: int | None
) -> tuple[np.ndarray, str]:
    """Decode a coded block into ``count`` elements of ``dtype`` (unsigned ints of the wire size).

    Returns the elements and the name of the compressor they came with. Raises ProtocolError
    for a malformed block, and before allocating for one whose elements (``count`` x size) or
    inflated stream would exceed ``max_inflated`` bytes.
    """
    itemsize = dtype.itemsize
    if max_inflated is not None and count * itemsize > max_inflated:
        raise ProtocolError(
            f"coded tensor of {count} elements inflates to {count * itemsize} bytes, "
            f"over the negotiated maximum {max_inflated}"
        )
    if len(view) < _HEAD.size:
        raise ProtocolError("coded tensor block is shorter than its header")
    method, layout = _HEAD.unpack_from(view)
    offset = _HEAD.size
    nonzero = count
    if layout == SPARSE:
        if len(view) < offset + _NONZERO.size:
            raise ProtocolError("sparse tensor block lacks its nonzero count")
        (nonzero,) = _NONZERO.unpack_from(view, offset)
        offset += _NONZERO.size
        if nonzero > count:
            raise ProtocolError(f"sparse tensor claims {nonzero} nonzeros of {count} elements")
    elif layout != DENSE:
        raise ProtocolError(f"unknown tensor layout {layout}")
    size = inflated_size(count, itemsize, layout, nonzero)
    if max_inflated is not None and size > max_inflated:
        raise ProtocolError(f"coded tensor inflates to {size} bytes, over {max_inflated}")
    stream = _inflate(method, view[offset:], size)
    if layout == DENSE:
        return _unplane(stream, count, itemsize).view(dtype), COMPRESSOR_NAMES[method]
    mask_bytes = (count + 7) // 8
    mask = np.unpackbits(stream[:mask_bytes], count=count).view(bool)
    if int(np.count_nonzero(mask)) != nonzero:
        raise ProtocolError(f"sparse tensor bitmask does not hold {nonzero} set bits")
    out = np.zeros(count, dtype=dtype)
    out[mask] = _unplane(stream[mask_bytes:], nonzero, itemsize).view(dtype)
    return out, COMPRESSOR_NAMES[method]


def _unplane(stream: np.ndarray, n: int, itemsize: int) -> np.ndarray:
    if itemsize == 1:
        return stream
    return np.ascontiguousarray(stream.reshape(itemsize, n).T).reshape(-1)


def _inflate(method: int, data: memoryview, size: int) -> np.ndarray:
    """Exactly ``size`` bytes out of ``data``; never more is allocated."""
    if method == STORED:
        out = bytes(data)
    elif method == ZLIB:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, size)
        except zlib.error as exc:
            raise ProtocolError(f"zlib stream of a tensor is corrupt: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise ProtocolError(f"zlib stream of a tensor does not inflate to {size} bytes")
    elif method == ZSTD:
        out = _unzstd(data, size)
    else:
        raise ProtocolError(f"unknown tensor compressor {method}")
    if len(out) != size:
        raise ProtocolError(f"tensor stream inflates to {len(out)} bytes, expected {size}")
    return np.frombuffer(out, dtype=np.uint8)


def _unzstd(data: memoryview, size: int) -> bytes:
    if _zstd is None:
        raise ProtocolError(
            "the peer sent a zstd-coded tensor and this install lacks the zstandard package: "
            "pip install zstandard (or send with a codec this end reads)"
        )
    try:
        # zstandard allocates what the frame header declares, whatever max_output_size says:
        # check the declaration first.
        declared = _zstd.frame_content_size(data)
        if declared != size:
            raise ProtocolError(f"zstd frame declares {declared} bytes, the tensor needs {size}")
        return _zstd.ZstdDecompressor().decompress(
            data, max_output_size=size, allow_extra_data=False
        )
    except _zstd.ZstdError as exc:
        raise ProtocolError(f"zstd stream of a tensor is corrupt: {exc}") from None
