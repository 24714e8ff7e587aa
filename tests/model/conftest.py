"""The model tests share one short real run on the digits and its model directory."""

from __future__ import annotations

import pytest

from host.model.in_process import train_in_process

EPOCHS = 2


@pytest.fixture(scope="session")
def trained(exported, digits_path, tmp_path_factory):
    """A short hierarchical run on the real digits; (bundle dir, edge report, host report,
    model dir, work dir, model-out lines, the host's state of the edge)."""
    tmp = tmp_path_factory.mktemp("model-out")
    bundle_dir = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    run = train_in_process(bundle_dir, str(digits_path), tmp, epochs=EPOCHS, timeout_s=120)
    return bundle_dir, run.edge_report, run.host_report, run.model_dir, tmp, run.lines, run.state
