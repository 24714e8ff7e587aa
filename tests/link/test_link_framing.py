"""Framing and header: round trips, resynchronisation, bounds; property tests on the decoder."""

from __future__ import annotations

import struct

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.link.errors import FrameError
from edge_runtime.link.framing import FrameDecoder, decode_frame, encode_frame, max_encoded_size
from edge_runtime.link.header import HEADER, PROTOCOL_VERSION, Header, MsgType, decode_header
from edge_runtime.link.messages import encode_message
from edge_runtime.train.messages import Metrics

pytestmark = pytest.mark.timeout(60)
MAX = 4096


def test_round_trip_and_delimiter_only_at_end() -> None:
    body = bytes(range(256)) * 3
    frame = encode_frame(body)
    assert frame.endswith(b"\x00") and 0 not in frame[:-1]
    assert decode_frame(frame[:-1]) == body
    dec = FrameDecoder(MAX)
    assert dec.feed(frame) == [body]


def test_resync_after_garbage_and_corruption() -> None:
    good = [encode_frame(bytes([i]) * 100) for i in range(1, 4)]
    broken = bytearray(good[1])
    broken[10] ^= 0x40
    stream = b"\x17garbage\x00" + good[0] + bytes(broken) + b"\xff" * 50 + b"\x00" + good[2]
    dec = FrameDecoder(MAX)
    out = [body for i in range(0, len(stream), 7) for body in dec.feed(stream[i : i + 7])]
    assert out == [bytes([1]) * 100, bytes([3]) * 100]
    assert dec.stats.crc_errors == 3  # the garbage run, the flipped frame, the 0xff run
    assert dec.stats.dropped_bytes > 0


def test_garbage_without_delimiter_costs_the_next_frame_only() -> None:
    stream = b"noise" + encode_frame(b"lost") + encode_frame(b"kept")
    assert FrameDecoder(MAX).feed(stream) == [b"kept"]


def test_oversize_frame_is_dropped_without_buffering() -> None:
    dec = FrameDecoder(64)
    assert dec.feed(b"\x01" * 10_000) == []
    assert dec.buffered <= max_encoded_size(64)
    assert dec.stats.oversize_frames == 1
    assert dec.feed(b"\x00" + encode_frame(b"ok")) == [b"ok"]


def test_header_length_checked_before_use() -> None:
    body = Header(type=MsgType.BATCH, seq=1, length=1 << 30).pack()
    with pytest.raises(FrameError, match="exceeds"):
        decode_header(body, MAX)
    with pytest.raises(FrameError, match="payload bytes"):
        decode_header(Header(type=MsgType.BATCH, length=5).pack() + b"abc", MAX)
    with pytest.raises(FrameError):
        decode_header(b"\x01\x02", MAX)


def test_header_layout_is_network_order() -> None:
    h = Header(type=MsgType.ACK, seq=0x01020304, ack=7, flags=2, length=0).pack()
    assert HEADER.size == 16
    assert struct.unpack("!BBHIII", h) == (PROTOCOL_VERSION, MsgType.ACK, 2, 0x01020304, 7, 0)


def test_frames_over_pyserial_loop_url() -> None:
    port = serial.serial_for_url("loop://", timeout=0.5)
    try:
        bodies = [encode_message(Metrics({"i": i}), seq=i + 1) for i in range(5)]
        port.write(b"".join(encode_frame(b) for b in bodies))
        data = port.read(sum(len(encode_frame(b)) for b in bodies))
    finally:
        port.close()
    dec = FrameDecoder(MAX)
    assert dec.feed(data) == bodies


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_decoder_never_raises_nor_overbuffers(chunks: list[bytes]) -> None:
    dec = FrameDecoder(128)
    for chunk in chunks:
        for body in dec.feed(chunk):
            assert len(body) <= 128
        assert dec.buffered <= max_encoded_size(128)
    total = sum(map(len, chunks))
    assert dec.stats.bytes_in == total


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=8),
    st.binary(max_size=100),
    st.integers(min_value=1, max_value=64),
)
def test_valid_frames_survive_garbage_before_them(
    bodies: list[bytes], junk: bytes, step: int
) -> None:
    stream = junk + b"\x00" + b"".join(encode_frame(b) for b in bodies)
    dec = FrameDecoder(256)
    out = [b for i in range(0, len(stream), step) for b in dec.feed(stream[i : i + step])]
    assert out[-len(bodies) :] == bodies
