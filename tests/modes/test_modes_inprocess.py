"""Each training mode in one process: its edge half and its host half over a paired stream.

The way Flower tests strategies without gRPC: `EdgeTrainer` and `CloudServer` run for real (real
ONNX Runtime sessions, the real link protocol with its framing, handshake, acks and spool) over
the two ends of one `socket_pair`, with no network and no subprocess. Accounting is exact: every
training batch of the edge is trained by the host exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_runtime.bundle import load_bundle
from edge_runtime.data import load_dataset, num_batches
from edge_runtime.engines import make_engine
from edge_runtime.link import LinkConfig
from edge_runtime.modes import LINK_MODE_NAMES, MODE_NAMES, mode_spec
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from host.cloud.modes import HOST_MODES
from host.cloud.server import CloudServer

SAMPLES = 160  # synthetic: 80% train -> 4 batches of 32


@pytest.fixture(scope="module")
def bundle_dir(exported) -> Path:
    return exported("smallcnn", 2, baselines=True)


def run_in_process(
    bundle_dir: Path,
    mode: str,
    tmp: Path,
    codec: str = "fp32",
    collect_model: bool = True,
    **run: object,
) -> tuple[dict, dict, int]:
    """Both halves of `mode` for one epoch; returns (edge report, host report, train batches).

    ``run``: more EdgeRunConfig fields (board pacing, say)."""
    spec = mode_spec(mode)
    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(bundle_dir / "edge")
    data = load_dataset(f"synthetic:{SAMPLES}", seed=0)
    config = LinkConfig(read_timeout=0.05)
    server = CloudServer(
        bundle,
        tmp / "host",
        key=bundle.key(),
        mode=mode,
        config=config,
        collect_model=collect_model,
    )
    engine = (
        make_engine("ort", edge_bundle, threads=1, variant=spec.engine_variant)
        if spec.engine_variant
        else None
    )
    link = server.connect_in_process(edge_bundle, tmp / "edge" / "spool")
    cfg = EdgeRunConfig(
        epochs=1, batch_size=32, mode=mode, work_dir=tmp / "edge", codec=codec, **run
    )
    try:
        edge = EdgeTrainer(engine, data, link, cfg, RunProgress("run-1")).run()
        link.flush(timeout=60)
    finally:
        link.close("done")
    deadline = time.monotonic() + 60
    while not all(e["done"] for e in server.report()["edges"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    server.stop()
    return edge, server.report(), num_batches(data, "train", 32)


def test_every_link_mode_has_both_halves() -> None:
    assert set(HOST_MODES) == set(LINK_MODE_NAMES)
    assert set(LINK_MODE_NAMES) < set(MODE_NAMES)
    for name in MODE_NAMES:
        assert mode_spec(name).edge_class().spec.name == name


@pytest.mark.parametrize("mode", LINK_MODE_NAMES)
def test_mode_trains_every_batch_exactly_once(bundle_dir: Path, mode: str, tmp_path: Path) -> None:
    edge, host, n_batches = run_in_process(bundle_dir, mode, tmp_path)
    spec = mode_spec(mode)
    (one,) = host["edges"]
    assert one["done"] and not host["errors"]
    assert sorted(map(tuple, one["trained_ids"])) == [(0, i) for i in range(n_batches)]
    assert one["unique_batches_trained"] == n_batches
    assert edge["final_accuracy"] is not None and 0.0 <= edge["final_accuracy"] <= 1.0
    assert edge["final_accuracy"] == host["final_accuracy"]
    if spec.trains_on_edge:
        assert edge["batches_sent"] == n_batches
    # Only a mode that trains its exit head scores it.
    assert (edge["edge_exit_accuracy"] is not None) == spec.scores_exit
    assert host["bytes_up"] > 0 and edge["bytes_up"] > 0


def test_edge_alone_needs_no_link(bundle_dir: Path) -> None:
    spec = mode_spec("edge")
    assert not spec.needs_link
    runner = spec.edge_class()(load_bundle(bundle_dir / "edge"), threads=1)
    report = runner.run(load_dataset(f"synthetic:{SAMPLES}", seed=0), epochs=1, batch_size=32)
    assert report["mode"] == "edge" and report["bytes_up"] == 0
    assert report["final_accuracy"] is not None


def test_unknown_mode_names_the_valid_ones() -> None:
    from edge_runtime.modes import UnknownMode, parse_modes

    with pytest.raises(UnknownMode, match="hierarchical, split, cloud, edge"):
        parse_modes("hierarchical,federated")


def test_split_learning_codes_its_gradient_like_a_lossless_activation(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """fp32+z both ways (host/cloud/modes/split.py): the edge decodes the coded gradients and
    trains every batch; fewer bytes go each way than at fp32."""
    fp32 = run_in_process(bundle_dir, "split", tmp_path / "fp32", codec="fp32")
    coded = run_in_process(bundle_dir, "split", tmp_path / "z", codec="fp32+z")
    for edge, host, n_batches in (fp32, coded):
        (one,) = host["edges"]
        assert one["done"] and not host["errors"]
        assert one["unique_batches_trained"] == n_batches == edge["batches_sent"]
    assert coded[0]["bytes_up"] < fp32[0]["bytes_up"]
    assert coded[0]["bytes_down"] < fp32[0]["bytes_down"]


@pytest.mark.parametrize("wanted", [True, False])
def test_the_trained_front_goes_up_only_to_a_host_that_asks(
    bundle_dir: Path, wanted: bool, tmp_path: Path
) -> None:
    """A host writing no model out says so in its WELCOME: the edge keeps its front (on a slow
    uplink minutes of upload the host would drop), and trains and reports as before."""
    edge, host, n_batches = run_in_process(
        bundle_dir, "hierarchical", tmp_path, collect_model=wanted
    )
    (one,) = host["edges"]
    assert one["unique_batches_trained"] == n_batches and not host["errors"]
    if wanted:
        assert edge["model_parts_sent"] >= 1 and edge["model_bytes_up"] > 0
    else:
        assert edge["model_parts_sent"] == edge["model_bytes_up"] == 0
    assert edge["final_accuracy"] == host["final_accuracy"] is not None
