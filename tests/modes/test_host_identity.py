"""A second board claiming a live edge id is refused with a clear ERROR; the first trains on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import load_bundle
from edge_runtime.link import EdgeLink, HandshakeRefused, LinkConfig
from edge_runtime.link.transports import socket_pair
from edge_runtime.train.messages import Batch
from host.cloud.server import CloudServer


def test_twin_edge_id_is_refused_and_the_first_edge_goes_on(exported, tmp_path: Path) -> None:
    bundle = load_bundle(exported("smallcnn", 2, baselines=True))
    config = LinkConfig(read_timeout=0.05, reconnect_timeout=5.0)
    connected = threading.Event()
    server = CloudServer(
        bundle,
        tmp_path / "host",
        key=bundle.key(),
        config=config,
        on_event=lambda kind, *_: connected.set() if kind == "connected" else None,
    )

    def connect(run_id: str) -> EdgeLink:
        edge_end, host_end = socket_pair(config.read_timeout)
        server.serve_transport(host_end)
        return EdgeLink.connect(
            "pair:", key=bundle.key(), bundle_sha256=bundle.manifest_sha256, edge_id="lab-pi",
            run_id=run_id, spool_dir=tmp_path / run_id, config=config, opener=lambda: edge_end,
        )  # fmt: skip

    first = connect("r1")
    try:
        assert connected.wait(120), "the first edge's session never started"
        # HandshakeRefused, not a LinkError after retrying: the refusal is final at once.
        with pytest.raises(HandshakeRefused) as refused:
            connect("r2")
        assert refused.value.code == "identity" and "r1" in str(refused.value)
        shape = tuple(bundle.manifest["activation"]["shape"])
        first.send(Batch(0, 0, np.array([1, 2]), np.ones((2, *shape), np.float32)))
        deadline = time.monotonic() + 120
        while server.report()["batches_trained_cloud"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.report()["batches_trained_cloud"] == 1
        assert any("refused run r2" in e for e in server.report()["errors"])
    finally:
        first.close("stopped")
        server.stop()
