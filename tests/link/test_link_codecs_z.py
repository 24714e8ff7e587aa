"""Entropy-coded codecs (fp32+z, fp16+z, int8+z): bit-exact, sizes as promised, bounded decoding."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.link import entropy
from edge_runtime.link.codecs import (
    BY_NAME,
    CODECS,
    LOSSLESS_CODECS,
    decode_tensor,
    decode_tensor_with_codec,
    encode_tensor,
    parse_codecs,
)
from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import Header, MsgType
from edge_runtime.link.messages import decode_message
from edge_runtime.train.messages import Batch

pytestmark = pytest.mark.timeout(120)
COMPRESSORS = ("zstd", "zlib", "stored")
CODED = [c for c in CODECS if BY_NAME[c].coded]
HEAD = 4  # codec id, dtype, ndim, axis


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    sparse = np.maximum(rng.standard_normal((4, 16, 8, 8)), 0).astype(np.float32)
    sparse[:, ::3] = 0.0
    special = rng.standard_normal((3, 5, 7)).astype(np.float32)
    flat = special.reshape(-1)
    flat[:8] = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.float32(1e-45), -np.float32(1e-45), 1.0]
    # A NaN with a payload, and a signalling one: the coding must keep their bits.
    flat.view(np.uint32)[8:10] = [0x7FC01234, 0x7F800001]
    denormal = (rng.random(300) * np.float32(1.1754942e-38)).astype(np.float32)
    return {
        "random": rng.standard_normal((8, 3, 11, 13)).astype(np.float32),
        "sparse": sparse,
        "all_zero": np.zeros((2, 64, 4, 4), dtype=np.float32),
        "nan_inf": special,
        "denormal": denormal,
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


TENSORS = _tensors()


@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("name", sorted(TENSORS))
def test_fp32z_is_bit_exact(name: str, compressor: str) -> None:
    x = TENSORS[name]
    y, codec = decode_tensor_with_codec(encode_tensor(x, "fp32+z", compressor))
    assert codec == "fp32+z" and y.shape == x.shape and y.dtype == np.float32
    assert np.array_equal(_bits(y), _bits(x))


@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("name", sorted(TENSORS))
def test_fp16z_codes_fp16_bit_exact(name: str, compressor: str) -> None:
    x = TENSORS[name]
    plain = decode_tensor(encode_tensor(x, "fp16"))
    coded = decode_tensor(encode_tensor(x, "fp16+z", compressor))
    assert np.array_equal(_bits(coded), _bits(plain))


@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("name", ["random", "sparse", "all_zero", "denormal", "scalar", "empty"])
def test_int8z_codes_int8_bit_exact(name: str, compressor: str) -> None:
    x = TENSORS[name]
    plain = decode_tensor(encode_tensor(x, "int8"))
    coded = decode_tensor(encode_tensor(x, "int8+z", compressor))
    assert np.array_equal(_bits(coded), _bits(plain))


def test_int8_of_denormals_is_finite() -> None:
    """A channel of denormals: its scale's inverse overflows, the codes must not."""
    x = TENSORS["denormal"]
    y = decode_tensor(encode_tensor(x, "int8+z"))
    assert np.isfinite(y).all()
    assert np.abs(y - x).max() <= (x.max() - x.min()) / 255


def test_int8z_refuses_non_finite_like_int8() -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_tensor(TENSORS["nan_inf"], "int8+z")


def test_registry_lists_and_parse() -> None:
    assert CODECS[:3] == ("fp32", "fp16", "int8")  # wire ids 0..2 unchanged
    assert set(CODED) == {"fp32+z", "fp16+z", "int8+z"}
    assert LOSSLESS_CODECS == ("fp32", "fp32+z")
    assert parse_codecs(" fp32+z,int8 ") == ("fp32+z", "int8")
    with pytest.raises(ValueError, match="choose from fp32, fp16, int8, fp32\\+z"):
        parse_codecs("fp8")


def _sparse_tensor(n: int, nonzero: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n, dtype=np.float32)
    x[rng.choice(n, nonzero, replace=False)] = rng.random(nonzero).astype(np.float32) + 0.5
    return x


@pytest.mark.parametrize(("n", "nonzero"), [(1000, 0), (1000, 37), (4096, 1000), (777, 500)])
def test_sparse_size_is_bitmask_plus_nonzeros(n: int, nonzero: int) -> None:
    """Stored, the sparse form is exactly header + bitmask + nonzero values; compressed, no more."""
    x = _sparse_tensor(n, nonzero)
    promised = HEAD + 4 + 2 + 4 + (n + 7) // 8 + 4 * nonzero  # + shape, coding head, count
    stored = encode_tensor(x, "fp32+z", "stored")
    assert len(stored) == promised
    assert stored[HEAD + 4 + 1] == entropy.SPARSE
    for compressor in ("zstd", "zlib"):
        assert len(encode_tensor(x, "fp32+z", compressor)) <= promised
    # fp16+z: 2 bytes a value; int8+z: the codes that are not 0 (min of the channel is 0 here).
    assert len(encode_tensor(x, "fp16+z", "stored")) == promised - 2 * nonzero
    int8 = encode_tensor(x.reshape(n, 1), "int8+z", "stored")  # one channel: 8 bytes of params
    assert len(int8) == HEAD + 8 + 8 + 2 + 4 + (n + 7) // 8 + nonzero


def test_dense_when_few_zeros() -> None:
    """Below 1/(8 x element size) zeros the bitmask does not pay: dense, elements as they are."""
    n = 4096
    x = _sparse_tensor(n, n - n // 64)  # 1.6 % zeros: < 1/32 for fp32
    stored = encode_tensor(x, "fp32+z", "stored")
    assert stored[HEAD + 4 + 1] == entropy.DENSE
    assert len(stored) == HEAD + 4 + 2 + 4 * n
    x16 = _sparse_tensor(n, n - n // 10)  # 10 % zeros: sparse for fp32 (> 1/32), fp16 (> 1/16)
    assert encode_tensor(x16, "fp16+z", "stored")[HEAD + 4 + 1] == entropy.SPARSE
    int8 = encode_tensor(x16.reshape(n, 1), "int8+z", "stored")  # 10 % < 1/8: dense
    assert int8[HEAD + 8 + 8 + 1] == entropy.DENSE


def test_incompressible_is_stored() -> None:
    noise = np.random.default_rng(1).integers(0, 2**32, 5000, dtype=np.uint32).view(np.float32)
    noise = np.where(noise == 0, 1.0, noise).astype(np.float32)
    buf = encode_tensor(noise, "fp32+z", "zstd")
    assert buf[HEAD + 4] == entropy.STORED
    assert len(buf) == HEAD + 4 + 2 + 4 * noise.size


def test_relu_activation_compresses() -> None:
    """Post-ReLU activations (half zeros): lossless well under fp32, int8+z under int8."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((8, 32, 16, 16)), 0).astype(np.float32)
    fp32 = len(encode_tensor(x, "fp32"))
    assert len(encode_tensor(x, "fp32+z")) < 0.75 * fp32
    assert len(encode_tensor(x, "int8+z")) < 0.9 * len(encode_tensor(x, "int8"))


# -- hostile input -------------------------------------------------------------------------------


def _coded(shape: tuple[int, ...], block: bytes, codec_id: int = 3, dtype: int = 0) -> bytes:
    head = struct.pack("!BBBB", codec_id, dtype, len(shape), 255)
    return head + struct.pack(f"!{len(shape)}I", *shape) + block


def _zstd_frame(data: bytes, content_size: bool = True) -> bytes:
    zstd = pytest.importorskip("zstandard")
    return zstd.ZstdCompressor(level=1, write_content_size=content_size).compress(data)


def test_declared_size_over_limit_refused_before_allocation() -> None:
    """A shape of 2^40 elements is refused on its declaration: nothing near it is allocated."""
    buf = _coded((1 << 20, 1 << 20), struct.pack("!BB", entropy.STORED, entropy.DENSE))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="negotiated maximum"):
            decode_tensor(buf, max_inflated=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("method", ["zlib", "zstd", "zstd-no-size"])
def test_bomb_inflating_past_its_shape_is_refused(method: str) -> None:
    """A stream of 64 MiB of zeros behind a header claiming 1000 elements: refused, bounded."""
    bomb = bytes(64 << 20)
    if method == "zlib":
        block = struct.pack("!BB", entropy.ZLIB, entropy.DENSE) + zlib.compress(bomb, 9)
    else:
        frame = _zstd_frame(bomb, content_size=method == "zstd")
        block = struct.pack("!BB", entropy.ZSTD, entropy.DENSE) + frame
    buf = _coded((1000,), block)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decode_tensor(buf, max_inflated=16 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # far below the 64 MiB the stream would make


def test_sparse_count_beyond_elements_refused() -> None:
    block = struct.pack("!BBI", entropy.STORED, entropy.SPARSE, 11) + bytes(2 + 44)
    with pytest.raises(ProtocolError, match="nonzeros"):
        decode_tensor(_coded((10,), block))


def test_sparse_bitmask_disagreeing_with_count_refused() -> None:
    block = struct.pack("!BBI", entropy.STORED, entropy.SPARSE, 2) + b"\x07\x00" + bytes(8)
    with pytest.raises(ProtocolError, match="set bits"):
        decode_tensor(_coded((10,), block))


def test_unknown_compressor_and_layout_refused() -> None:
    with pytest.raises(ProtocolError, match="compressor"):
        decode_tensor(_coded((2,), struct.pack("!BB", 9, entropy.DENSE) + bytes(8)))
    with pytest.raises(ProtocolError, match="layout"):
        decode_tensor(_coded((2,), struct.pack("!BB", entropy.STORED, 5) + bytes(8)))


def test_batch_over_the_negotiated_maximum_is_a_protocol_error() -> None:
    """What the channel does with a BATCH: decode_message bounded by the negotiated max_frame."""
    x = np.zeros((4, 64, 16, 16), dtype=np.float32)  # 256 KiB of elements, a few hundred coded
    payload = Batch(0, 1, np.arange(4), x, "fp32+z").encode()
    assert len(payload) < 1024
    header = Header(type=MsgType.BATCH, seq=1, length=len(payload))
    ok = decode_message(header, payload, max_inflated=x.nbytes)
    assert isinstance(ok, Batch) and np.array_equal(ok.tensor, x)
    with pytest.raises(ProtocolError, match="negotiated maximum"):
        decode_message(header, payload, max_inflated=x.nbytes - 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=4),
    codec=st.sampled_from(CODED),
    layout=st.sampled_from([entropy.DENSE, entropy.SPARSE]),
    method=st.sampled_from([entropy.STORED, entropy.ZLIB, entropy.ZSTD]),
    nonzero=st.integers(0, (1 << 32) - 1),
    tail=st.binary(max_size=64),
    limit=st.integers(0, 1 << 16),
)
def test_hostile_headers_never_inflate_past_the_limit(
    shape: list[int],
    codec: str,
    layout: int,
    method: int,
    nonzero: int,
    tail: bytes,
    limit: int,
) -> None:
    """Any declared shape, count and stream: ProtocolError, or a tensor within the limit; the
    memory used stays near the limit whatever the header claims."""
    spec = BY_NAME[codec]
    block = struct.pack("!BB", method, layout)
    if layout == entropy.SPARSE:
        block += struct.pack("!I", nonzero)
    block += tail
    codec_id = CODECS.index(codec)
    dtype = {4: 0, 2: 1, 1: 2}[spec.wire.itemsize]
    params = bytes(8) if spec.quantised else b""  # axis 255: one channel
    buf = _coded(tuple(shape), params + block, codec_id, dtype)
    tracemalloc.start()
    try:
        try:
            y = decode_tensor(buf, max_inflated=limit)
        except ProtocolError:
            y = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if y is not None:
        assert y.shape == tuple(shape)
        assert y.size * spec.wire.itemsize <= limit
    # Output as float32 (up to 4x an int8 limit) and a few working copies: never the claim.
    assert peak <= 16 * limit + (256 << 10)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([0, 0, 0, 0x3F800000, 0x80000000, 0x7FC00001, 0x00000001, 0x4049_0FDB]),
        max_size=300,
    ),
    compressor=st.sampled_from(COMPRESSORS),
)
def test_fp32z_round_trips_any_bits(data: list[int], compressor: str) -> None:
    x = np.array(data, dtype=np.uint32).view(np.float32)
    y = decode_tensor(encode_tensor(x, "fp32+z", compressor), max_inflated=x.nbytes)
    assert np.array_equal(_bits(y), x.view(np.uint32))


# -- over a real link ----------------------------------------------------------------------------


def _connect(url: str, spool, **cfg: object):
    from linktest_support import BUNDLE, KEY, fast_config

    from edge_runtime.link import EdgeLink

    return EdgeLink.connect(
        url, key=KEY, bundle_sha256=BUNDLE, edge_id="edge0", run_id="run1", spool_dir=spool,
        config=fast_config(**cfg),
    )  # fmt: skip


def test_coded_batches_cross_tcp_bit_exact(listener, tmp_path) -> None:
    from linktest_support import Collector

    col = Collector()
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    link = _connect(f"socket://{host}:{port}", tmp_path)
    sent = {codec: TENSORS["sparse"] * (i + 1) for i, codec in enumerate(CODED)}
    for i, (codec, x) in enumerate(sent.items()):
        link.send(Batch(0, i, np.arange(4) % 10, x, codec))
    link.flush(10)
    got = [m for m in col.data() if isinstance(m, Batch)]
    assert [m.codec for m in got] == CODED
    assert np.array_equal(_bits(got[0].tensor), _bits(sent["fp32+z"]))
    for m in got[1:]:
        plain = decode_tensor(encode_tensor(sent[m.codec], BY_NAME[m.codec].base))
        assert np.array_equal(_bits(m.tensor), _bits(plain))
    assert got[0].wire_bytes < 0.8 * sent["fp32+z"].nbytes
    link.close()


def test_sender_refuses_what_would_inflate_past_max_frame(listener, tmp_path) -> None:
    """A tensor of zeros codes to a few bytes, but the receiver would refuse it: so does the edge."""
    from linktest_support import Collector

    from edge_runtime.link import FrameError

    host, port = listener.serve_tcp("127.0.0.1", 0, Collector())
    link = _connect(f"socket://{host}:{port}", tmp_path, max_frame=65536)
    zeros = np.zeros((4, 64, 16, 16), dtype=np.float32)  # 256 KiB inflated, ~100 B coded
    with pytest.raises(FrameError, match="exceeds max_frame 65536"):
        link.send(Batch(0, 0, np.arange(4), zeros, "fp32+z"))
    assert link.pending == 0
    link.send(Batch(0, 1, np.arange(4), zeros[:, :8], "fp32+z"))  # 32 KiB: fine
    link.flush(5)
    link.close()


def test_the_channels_inbox_refuses_a_hostile_batch() -> None:
    """What the host's reader does with a sequenced BATCH: decode bounded by its max_frame; the
    refused body reaches the application as a Malformed value (which the host answers with an
    ERROR), never as an inflated tensor."""
    from edge_runtime.link.channel import Inbox
    from edge_runtime.link.messages import Malformed

    zeros = np.zeros((4, 64, 16, 16), dtype=np.float32)
    payload = Batch(0, 0, np.arange(4), zeros, "fp32+z").encode()
    header = Header(type=MsgType.BATCH, seq=1, length=len(payload))
    inbox = Inbox(window=4)
    inbox.accept(header, memoryview(payload), 65536)
    (got,) = inbox.queue
    assert isinstance(got, Malformed) and "negotiated maximum 65536" in got.error


def test_a_board_without_zstandard_codes_with_zlib(tmp_path) -> None:
    """A real interpreter where zstandard cannot be imported: zlib on the wire, same format; and
    a zstd-coded tensor from a peer is refused with what to install."""
    import subprocess
    import sys

    zstd_buf = encode_tensor(TENSORS["sparse"], "fp32+z", "zstd")
    (tmp_path / "zstd.bin").write_bytes(zstd_buf)
    script = f"""
import sys
sys.modules["zstandard"] = None  # as on a board with the base install only
import numpy as np
from edge_runtime.link import entropy
from edge_runtime.link.codecs import decode_tensor, encode_tensor
from edge_runtime.link.errors import ProtocolError
print(entropy.compressor_name())
x = np.maximum(np.random.default_rng(0).standard_normal((4, 8, 8, 8)), 0).astype(np.float32)
np.save({str(tmp_path / "x.npy")!r}, x)
open({str(tmp_path / "zlib.bin")!r}, "wb").write(encode_tensor(x, "fp32+z"))
try:
    decode_tensor(open({str(tmp_path / "zstd.bin")!r}, "rb").read())
except ProtocolError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "zlib"
    assert "lacks the zstandard package: pip install zstandard" in lines[1]
    buf = (tmp_path / "zlib.bin").read_bytes()
    assert buf[HEAD + 16] == entropy.ZLIB  # after the 4-d shape
    x = np.load(tmp_path / "x.npy")
    assert np.array_equal(_bits(decode_tensor(buf)), _bits(x))
