"""Tensor codecs and message payloads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_runtime.deploy_messages import FileChunk
from edge_runtime.link.codecs import CODECS, codec_report, decode_tensor, encode_tensor
from edge_runtime.link.control import Bye, Error, Hello, Welcome
from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import decode_header
from edge_runtime.link.messages import Message, decode_message, encode_message
from edge_runtime.train.messages import Batch, EpochEnd, EvalBatch, Grad, Metrics, RawBatch

pytestmark = pytest.mark.timeout(60)
RNG = np.random.default_rng(0)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shape", [(), (7,), (5, 9), (2, 3, 4), (4, 8, 6, 6), (0, 3)])
def test_round_trip_shapes(codec: str, shape: tuple[int, ...]) -> None:
    x = RNG.standard_normal(shape).astype(np.float32)
    y = decode_tensor(encode_tensor(x, codec))
    assert y.dtype == np.float32 and y.shape == x.shape and y.flags.writeable
    bound = {"fp32": 0.0, "fp16": 1e-3, "int8": 0.02}[codec.removesuffix("+z")]
    if x.size:
        assert np.linalg.norm(x - y) <= bound * np.linalg.norm(x) + 1e-6


def test_int8_is_per_channel_on_nchw() -> None:
    x = RNG.standard_normal((8, 4, 5, 5)).astype(np.float32)
    x[:, 1] *= 1000.0  # a loud channel must not wash out the quiet ones
    x[:, 2] = 3.25  # a constant channel comes back exactly
    y = decode_tensor(encode_tensor(x, "int8"))
    for c in (0, 3):
        err = np.abs(x[:, c] - y[:, c]).max()
        assert err <= (x[:, c].max() - x[:, c].min()) / 255 * 0.5 + 1e-6
    assert np.array_equal(y[:, 2], x[:, 2])


def test_sizes_and_report() -> None:
    x = RNG.standard_normal((16, 64, 8, 8)).astype(np.float32)  # 256 KiB
    report = codec_report(x)
    assert set(report) == set(CODECS)
    assert report["fp32"]["rel_error"] == 0.0
    assert report["fp16"]["bytes"] < 0.51 * report["fp32"]["bytes"]
    assert report["int8"]["bytes"] < 0.26 * report["fp32"]["bytes"]
    assert report["int8"]["rel_error"] < 0.01


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        encode_tensor(np.zeros(3), "bf16")
    with pytest.raises(ValueError, match="finite"):
        encode_tensor(np.array([1.0, np.nan]), "int8")
    good = encode_tensor(np.zeros((4, 4), np.float32), "fp16")
    for bad in (good[:3], good[:-1], good + b"x", b"\x09" + good[1:]):
        with pytest.raises(ProtocolError):
            decode_tensor(bad)
    # a shape claiming 2**64 elements is refused before any allocation
    huge = bytes([0, 0, 2, 255]) + (0xFFFFFFFF).to_bytes(4, "big") * 2
    with pytest.raises(ProtocolError):
        decode_tensor(huge)


def _round(msg: Message) -> Any:
    header, payload = decode_header(encode_message(msg, seq=9), 1 << 24)
    out = decode_message(header, payload)
    assert out.seq == 9
    return out


def test_batch_round_trip_keeps_wire_bytes_and_compacts_labels() -> None:
    labels = np.array([0, 9, 3, 7])
    x = RNG.standard_normal((4, 3, 2, 2)).astype(np.float32)
    for cls in (Batch, EvalBatch):
        out = _round(cls(2, 5, labels, x, "fp16"))
        assert type(out) is cls and (out.epoch, out.index, out.codec) == (2, 5, "fp16")
        assert out.labels.dtype == np.int64 and np.array_equal(out.labels, labels)
        assert np.allclose(out.tensor, x, atol=1e-2)
        assert out.wire_bytes == len(cls(2, 5, labels, x, "fp16").encode())
    small = Batch(0, 0, np.arange(100), np.zeros(1, np.float32)).encode()
    big = Batch(0, 0, np.arange(100) * 100_000, np.zeros(1, np.float32)).encode()
    assert len(small) < len(big)  # int8 vs int32 labels on the wire


def test_other_messages_round_trip() -> None:
    assert _round(EpochEnd(3, {"loss": 0.5})) == EpochEnd(3, {"loss": 0.5})
    assert _round(Metrics({"a": [1, 2]})) == Metrics({"a": [1, 2]})
    assert _round(Error("auth", "bad key")) == Error("auth", "bad key")
    assert _round(Bye("done")) == Bye("done")
    assert _round(Hello(1, "e", "r", "ff", 99)) == Hello(1, "e", "r", "ff", 99)
    assert _round(Welcome(4, {"epoch": 1}, 6, 1000)) == Welcome(4, {"epoch": 1}, 6, 1000)
    chunk = FileChunk("edge/model.onnx", 10, 30, b"\x00\x01", "aa" * 32)
    assert _round(chunk) == chunk
    g = _round(Grad(1, 2, np.ones((2, 3), np.float32)))
    assert np.array_equal(g.tensor, np.ones((2, 3)))
    raw = _round(RawBatch(1, 2, np.array([1, 2]), np.arange(24, dtype=np.uint8).reshape(2, 3, 4)))
    assert raw.data.dtype == np.uint8 and raw.data.shape == (2, 3, 4)


def test_malformed_payload_is_a_protocol_error() -> None:
    header, _ = decode_header(encode_message(Metrics({})), 1 << 20)
    with pytest.raises(ProtocolError):
        decode_message(header, memoryview(b"{not json"))
