"""Sessions on one serial line stay apart: a frame an earlier session left on the line (a late
acknowledgement, a retransmission) is never taken as one of the next session's messages.

Before protocol version 3 a frame carried nothing of its session, so a stale frame with the
sequence number the next session expected passed as that session's message (a deploy once read
an empty inventory from a session before). Now each session's CRC starts from a seed its
handshake made (`framing.session_tag`). Real parts: a HostListener on a pty pair, EdgeLinks.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, PtyBridge, fast_config

from edge_runtime.link import EdgeLink, HostListener
from edge_runtime.link.errors import FrameError
from edge_runtime.link.framing import FrameDecoder, decode_frame, encode_frame, session_tag
from edge_runtime.link.header import Header, MsgType
from edge_runtime.link.messages import encode_message
from edge_runtime.link.transports import open_url
from edge_runtime.train.messages import Batch

pytestmark = pytest.mark.timeout(90)


def _batch(i: int) -> Batch:
    return Batch(0, i, np.arange(2), np.full((2, 8), i, np.float32))


def _edge(url: str, run_id: str, spool: Path) -> EdgeLink:
    return EdgeLink.connect(
        url, key=KEY, bundle_sha256=BUNDLE, edge_id="board", run_id=run_id, spool_dir=spool,
        config=fast_config(),
    )  # fmt: skip


def _eventually(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_frame_of_another_session_fails_its_crc_and_an_observer_reads_both() -> None:
    body = Header(type=MsgType.KEEPALIVE).pack()
    one, two = session_tag(b"a" * 32), session_tag(b"b" * 32)
    assert one != two and 0 not in (one, two)
    framed = encode_frame(body, one)
    assert decode_frame(framed[:-1], one) == body
    for other in (0, two):
        with pytest.raises(FrameError, match="CRC"):
            decode_frame(framed[:-1], other)
    dec = FrameDecoder(1 << 10)
    dec.session_tag = two
    stream = encode_frame(body, one) + encode_frame(body) + encode_frame(body, two)
    assert dec.feed_frames(stream) == [(body, False), (body, True)]
    assert dec.stats.crc_errors == 1  # the other session's frame looks like line noise
    assert FrameDecoder(1 << 10, observer=True).feed(stream) == [body] * 3


def test_a_stale_frame_is_not_taken_into_the_next_session(
    pty_bridge: PtyBridge, tmp_path: Path
) -> None:
    col = Collector()
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    injector = open_url(pty_bridge.paths[0], 115200, 0.05)  # a second writer on the edge's end
    try:
        lst.serve_serial(pty_bridge.paths[1], col)
        first = _edge(pty_bridge.paths[0], "run-a", tmp_path / "a")
        first.send(_batch(0))
        first.flush(10)
        # White-box: the seed of run-a's session, as the frames it left on the line carry it.
        (line,) = lst._lines
        tag_a = line.io.decoder.session_tag
        first.close()
        _eventually(lambda: not line.io.in_session)  # the line waits for the next HELLO

        # A late frame of run-a (its batch resent) after its session ended: stale, not refused.
        late = encode_frame(encode_message(_batch(1), seq=2), tag_a)
        injector.write(late)
        _eventually(lambda: col.sessions[0].stats["stale_frames"] == 1)
        assert lst.refusals.total == 0

        second = _edge(pty_bridge.paths[0], "run-b", tmp_path / "b")
        # Run-a's message with the sequence number run-b's first message is about to take.
        injector.write(encode_frame(encode_message(_batch(99), seq=1), tag_a))
        second.send(_batch(5))
        second.flush(10)
        time.sleep(0.5)  # anything more would have arrived by now
        assert [s.run_id for s in col.sessions] == ["run-a", "run-b"]
        assert [m.index for m in col.data()] == [0, 5]
        assert col.sessions[1].stats["crc_errors"] >= 1  # run-a's frame, unreadable in run-b
        assert lst.refusals.total == 0
        second.close()
    finally:
        injector.close()
        lst.close()
