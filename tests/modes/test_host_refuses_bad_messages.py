"""An authenticated edge that sends nonsense is refused alone: ERROR to it, nothing trained or
acknowledged, logged; another edge on the same host trains on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_modes_inprocess import run_in_process

from edge_runtime.bundle import load_bundle
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.link.control import Error
from edge_runtime.link.transports import socket_pair
from edge_runtime.train.messages import Batch, EpochEnd
from host.cloud.server import CloudServer


@pytest.fixture(scope="module")
def bundle_dir(exported) -> Path:
    return exported("smallcnn", 2, baselines=True)


def _bad_messages(shape: tuple[int, ...]) -> dict[str, object]:
    good = np.zeros((4, *shape), np.float32)
    return {
        "labels out of range": Batch(0, 0, np.array([0, 1, 99, 2]), good),
        "wrong shape": Batch(0, 0, np.array([0, 1, 2, 3]), np.zeros((4, 3, 5, 5), np.float32)),
        "NaN activation": Batch(0, 0, np.array([0, 1, 2, 3]), good * np.nan),
        "labels and samples differ": Batch(0, 0, np.array([0, 1]), good),
        "body is a list": EpochEnd(0, [1, 2, 3]),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("case", list(_bad_messages((1,))))
def test_bad_message_is_refused_and_not_acknowledged(
    bundle_dir: Path, tmp_path: Path, case: str
) -> None:
    bundle = load_bundle(bundle_dir)
    shape = tuple(bundle.manifest["activation"]["shape"])
    config = LinkConfig(read_timeout=0.05)
    edge_end, host_end = socket_pair(config.read_timeout)
    server = CloudServer(bundle, tmp_path / "host", key=bundle.key(), config=config)
    server.serve_transport(host_end)
    link = EdgeLink.connect(
        "pair:", key=bundle.key(), bundle_sha256=bundle.manifest_sha256, edge_id="bad",
        run_id="r", spool_dir=tmp_path / "spool", config=config, opener=lambda: edge_end,
    )  # fmt: skip
    try:
        link.send(_bad_messages(shape)[case])
        deadline, answer = time.monotonic() + 30, None
        while answer is None and time.monotonic() < deadline:
            msg = link.poll(0.1)
            answer = msg if isinstance(msg, Error) else None
        assert answer is not None and answer.code == "message", case
        assert link.pending == 1  # the host never acknowledged it: it stays in the spool
    finally:
        link.close("stopped")
        server.stop()
    report = server.report()
    assert report["batches_trained_cloud"] == 0
    assert any("refused a message" in e for e in report["errors"]), report["errors"]


def test_a_good_edge_trains_on_beside_a_bad_one(bundle_dir: Path, tmp_path: Path) -> None:
    # The good edge runs the full in-process hierarchical run while a bad one is refused.
    results: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: results.update(good=run_in_process(bundle_dir, "hierarchical", tmp_path))
    )
    worker.start()
    test_bad_message_is_refused_and_not_acknowledged(bundle_dir, tmp_path / "bad", "wrong shape")
    worker.join(120)
    edge, host, n = results["good"]
    assert host["edges"][0]["unique_batches_trained"] == n
