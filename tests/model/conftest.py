"""The model tests share one short real run on the digits and its model directory."""

from __future__ import annotations

import time

import pytest

from edge_runtime.bundle import load_bundle
from edge_runtime.data import load_dataset
from edge_runtime.engines import make_engine
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.link.transports import socket_pair
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from host.cloud.server import CloudServer
from host.model.collect import held_out_samples, model_out, parts_from_state

EPOCHS = 2


@pytest.fixture(scope="session")
def trained(exported, digits_path, tmp_path_factory):
    """A short hierarchical run on the real digits; (bundle dir, edge report, host report,
    model dir, work dir)."""
    tmp = tmp_path_factory.mktemp("model-out")
    bundle_dir = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(bundle_dir / "edge")
    data = load_dataset(str(digits_path), seed=0)
    config = LinkConfig(read_timeout=0.05)
    edge_end, host_end = socket_pair(config.read_timeout)
    server = CloudServer(bundle, tmp / "host", key=bundle.key(), config=config)
    server.serve_transport(host_end)
    link = EdgeLink.connect(
        "pair:",
        key=bundle.key(),
        bundle_sha256=edge_bundle.manifest_sha256,
        edge_id="edge-1",
        run_id="run-1",
        spool_dir=tmp / "edge" / "spool",
        config=config,
        opener=lambda: edge_end,
    )
    engine = make_engine("ort", edge_bundle, threads=1)
    cfg = EdgeRunConfig(epochs=EPOCHS, batch_size=32, work_dir=tmp / "edge")
    try:
        edge = EdgeTrainer(engine, data, link, cfg, RunProgress("run-1")).run()
        link.flush(timeout=120)
    finally:
        link.close("done")
    deadline = time.monotonic() + 120
    while not all(s.done for s in server.states()) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()
    (state,) = server.states()
    out = tmp / "model"
    lines: list[str] = []
    model_out(
        parts_from_state(bundle, state), out, held_out_samples(str(digits_path)), lines.append
    )
    return bundle_dir, edge, server.report(), out, tmp, lines, state
