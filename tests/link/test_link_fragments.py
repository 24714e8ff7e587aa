"""Fragmentation: large messages cut into small checked frames, each resent alone.

Finding 1 of issue 17: on a pty pair that garbles and drops one byte in a million, a 4 MB
message sent as one frame carried a fault almost every time, so the host received hundreds of
MB and trained 0 batches. Cut into frames of a few KiB, each lost frame is resent alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, fast_config

from edge_runtime.link import EdgeLink, HostListener
from edge_runtime.link.control import FragNack
from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.fragments import FrameSizer, Partial, add_fragment, pack_fragment
from edge_runtime.link.header import FLAG_FRAGMENT, Header, MsgType
from edge_runtime.link.messages import decode_message
from edge_runtime.train.messages import Batch
from host.linkemu.null_modem import NullModem

pytestmark = pytest.mark.timeout(300)


def _fragment(seq: int, index: int, count: int, data: bytes) -> tuple[Header, memoryview]:
    body = pack_fragment(index, count, data)
    header = Header(type=MsgType.BATCH, seq=seq, flags=FLAG_FRAGMENT, length=len(body))
    return header, memoryview(body)


def test_fragments_reassemble_in_order_whatever_order_they_come_in() -> None:
    partials: dict[int, Partial] = {}
    for index in (2, 0, 1, 0):  # a duplicate too
        part = add_fragment(partials, *_fragment(7, index, 3, bytes([index]) * 5), max_message=99)
    assert part.complete
    header, payload = part.join(7)
    assert header.seq == 7 and bytes(payload) == b"\x00" * 5 + b"\x01" * 5 + b"\x02" * 5


@pytest.mark.parametrize(
    ("fragments", "match"),
    [
        ([(0, 3), (1, 4)], "earlier ones said"),  # the count changes
        ([(3, 3)], "fragment 3 of 3"),  # index past the count
        ([(0, 1)], "fragment 0 of 1"),  # a single fragment is a whole message
        ([(0, 1 << 30)], "of 1073741824"),  # more fragments than bytes allowed
    ],
)
def test_a_fragment_that_contradicts_its_message_is_a_protocol_error(
    fragments: list[tuple[int, int]], match: str
) -> None:
    partials: dict[int, Partial] = {}
    with pytest.raises(ProtocolError, match=match):
        for index, count in fragments:
            add_fragment(partials, *_fragment(1, index, count, b"xy"), max_message=1000)


def test_a_peer_cannot_grow_a_message_past_the_negotiated_maximum() -> None:
    partials: dict[int, Partial] = {}
    add_fragment(partials, *_fragment(1, 0, 3, b"a" * 60), max_message=100)
    with pytest.raises(ProtocolError, match="grows past max_frame 100"):
        add_fragment(partials, *_fragment(1, 1, 3, b"b" * 60), max_message=100)


def test_frag_nack_round_trips() -> None:
    nack = FragNack(0, 5, 17, 4, 40, (3, 9, 12))
    header = Header(type=MsgType.FRAG_NACK, length=len(nack.encode()))
    assert decode_message(header, nack.encode()) == nack


def test_the_frame_size_follows_the_measured_loss() -> None:
    sizer = FrameSizer(limit=16384, minimum=256)
    for _ in range(1000):
        sizer.sent(4096)
    sizer.lost(0)
    assert sizer.size == 16384  # a clean line keeps the largest frames
    sizer.lost(40)  # 4 % of 4 KiB frames lost: about 1e-5 per byte
    assert 1024 <= sizer.size <= 2500
    heavy = FrameSizer(limit=16384, minimum=256)
    for _ in range(1000):
        heavy.sent(4096)
    heavy.lost(500)
    assert heavy.size < sizer.size


def _serial_session(
    tmp_path: Path, modem: NullModem, messages: int, elements: int, run_id: str
) -> tuple[Collector, dict[str, int], dict[str, int]]:
    """Send ``messages`` BATCHes of ``elements`` fp32 values edge -> host over the modem."""
    col = Collector()
    config = fast_config(
        baudrate=3_000_000, dead_timeout=20.0, window=4, link_bytes_per_s=2e6, rto_min=0.3
    )
    lst = HostListener(KEY, BUNDLE, config=config)
    lst.serve_serial(modem.paths[1], col)
    rng = np.random.default_rng(0)
    try:
        link = EdgeLink.connect(
            modem.paths[0],
            key=KEY,
            bundle_sha256=BUNDLE,
            edge_id="edge0",
            run_id=run_id,
            spool_dir=tmp_path / run_id,
            config=config,
        )
        sent = []
        for i in range(messages):
            x = rng.standard_normal((1, elements)).astype(np.float32)
            sent.append(x)
            link.send(Batch(0, i, np.array([i % 10]), x))
        link.flush(240)
        got = [m for m in col.data() if isinstance(m, Batch)]
        assert [m.index for m in got] == list(range(messages)), "lost, doubled or reordered"
        for m, x in zip(got, sent, strict=True):
            assert np.array_equal(m.tensor, x), f"batch {m.index} arrived altered"
        edge_stats = link.stats
        link.close()
        return col, edge_stats, col.sessions[0].stats
    finally:
        lst.close()


def test_4mb_messages_arrive_over_a_pty_that_garbles_and_drops_bytes(tmp_path: Path) -> None:
    # 1e-6 per byte garbled and as many dropped: a 4 MB frame would carry ~8 faults.
    with NullModem(byte_flip_rate=1e-6, byte_drop_rate=1e-6, seed=3) as modem:
        _col, edge, host = _serial_session(tmp_path, modem, 5, 1 << 20, "noisy")
        faults = modem.bytes_flipped + modem.bytes_dropped
    assert faults >= 5, f"the line made only {faults} faults: the test proves nothing"
    assert edge["fragments_sent"] > 5 * 1000  # 4 KiB frames
    assert edge["fragment_retransmits"] >= 1
    # Each fault costs a frame, not a message: far less than a resent 4 MB message per fault.
    assert edge["fragment_retransmits"] < 5 * faults
    assert edge["bytes_up"] < 1.2 * 5 * 4 * (1 << 20)
    assert host["crc_errors"] + host["dropped_bytes"] > 0


def test_a_clean_line_keeps_whole_messages_below_the_frame_size(tmp_path: Path) -> None:
    with NullModem() as modem:
        _col, edge, _host = _serial_session(tmp_path, modem, 20, 512, "clean")
    assert edge["fragments_sent"] == 0  # 2 KiB messages fit a 4 KiB frame
    assert edge["retransmits"] == 0
