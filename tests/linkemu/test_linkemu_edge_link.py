"""The real link protocol (EdgeLink -> HostListener) through a shaped relay, and through a cut."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.link import EdgeLink, HostListener, HostSession, LinkClosed, LinkConfig
from edge_runtime.train.messages import Batch
from host.linkemu import shaped

pytestmark = pytest.mark.timeout(30)

KEY = b"linkemu-test-key"
BUNDLE = "cd" * 32
CONFIG = LinkConfig(
    spool_fsync=False,
    rto_min=0.3,
    keepalive_interval=0.2,
    dead_timeout=2.0,
    handshake_timeout=2.0,
    reconnect_timeout=10.0,
    backoff_initial=0.05,
    backoff_max=0.3,
    read_timeout=0.02,
    link_bytes_per_s=250e3,
)


class Tail:
    """A host application that consumes every batch and records its index."""

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, session: HostSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                msg = session.recv(0.2)
            except LinkClosed:
                return
            if msg is None or not msg.seq:
                continue
            if isinstance(msg, Batch):
                with self.lock:
                    self.indices.append(msg.index)
            session.consumed(msg.seq)


@pytest.fixture
def host() -> Iterator[tuple[tuple[str, int], Tail]]:
    tail = Tail()
    listener = HostListener(KEY, BUNDLE, config=CONFIG)
    address = listener.serve_tcp("127.0.0.1", 0, tail)
    yield address, tail
    listener.close()


def batch(i: int) -> Batch:
    activation = np.full((4, 1024), i, dtype=np.float32)  # 16 kB
    return Batch(0, i, np.arange(4) % 10, activation, "fp32")


def connect(url: str, spool: Path) -> EdgeLink:
    return EdgeLink.connect(
        url,
        key=KEY,
        bundle_sha256=BUNDLE,
        edge_id="edge0",
        run_id="run0",
        spool_dir=spool,
        config=CONFIG,
    )


def test_batches_cross_a_shaped_link_at_its_rate(host, tmp_path: Path) -> None:
    address, tail = host
    with shaped(address, "2mbit/100ms") as relay:
        link = connect(relay.url, tmp_path)
        started = time.monotonic()
        for i in range(20):
            link.send(batch(i))
        link.flush(20)
        elapsed = time.monotonic() - started
        wire_up = link.stats["bytes_up"]
        link.close()
        relayed = relay.stats
    assert tail.indices == list(range(20))
    # Every byte the edge wrote crossed the emulated link, handshake included.
    assert relayed["bytes_up"] >= wire_up > 20 * 16_000
    print(
        f"edge link: {wire_up} B up in {elapsed:.2f} s ({wire_up * 8 / elapsed / 1e6:.2f} Mbit/s)"
    )
    assert elapsed >= 20 * 16_000 * 8 / 2e6


def test_a_cut_loses_and_duplicates_nothing(host, tmp_path: Path) -> None:
    address, tail = host
    with shaped(address, "4mbit/40ms") as relay:
        link = connect(relay.url, tmp_path)
        for i in range(30):
            link.send(batch(i))
            if i == 10:
                relay.cut(0.5)
        link.flush(20)
        link.close()
        stats = relay.stats
    assert tail.indices == list(range(30))
    assert stats["cuts"] == 1 and stats["connections"] >= 2
