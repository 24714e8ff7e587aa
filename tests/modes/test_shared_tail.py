"""`hostctl serve --shared-tail`: several edges feed one tail, each edge's accounting its own.

In-process like test_modes_inprocess.py: real EdgeTrainers (ONNX Runtime fronts) on real link
sessions over `socket_pair`, three edges in threads, one CloudServer with one shared tail.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from restarting_host import RestartingHost

from edge_runtime.bundle import load_bundle
from edge_runtime.data import load_dataset, num_batches
from edge_runtime.engines import make_engine
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.statefile import StateError
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from host.cloud.edge_state import SharedTail
from host.cloud.server import CloudServer

SAMPLES = 320  # synthetic: 80% train -> 16 batches of 16 per edge
BATCH = 16
EDGES = ("cam-a", "cam-b", "cam-c")
CONFIG = LinkConfig(read_timeout=0.05, reconnect_timeout=60.0)


@pytest.fixture(scope="module")
def bundle_dir(exported) -> Path:
    return exported("smallcnn", 2)


def run_edge(
    bundle_dir: Path, host: RestartingHost, edge_id: str, seed: int, tmp: Path, out: dict
) -> None:
    """One edge's whole run (hierarchical, one epoch) on its own data; its report into `out`."""
    edge_bundle = load_bundle(bundle_dir / "edge")
    data = load_dataset(f"synthetic:{SAMPLES}", seed=seed)
    engine = make_engine("ort", edge_bundle, threads=1, variant="train")
    link = EdgeLink.connect(
        "pair:",
        key=host.bundle.key(),
        bundle_sha256=edge_bundle.manifest_sha256,
        edge_id=edge_id,
        run_id="run-1",
        spool_dir=tmp / edge_id / "spool",
        config=CONFIG,
        opener=host.open_,
    )
    cfg = EdgeRunConfig(epochs=1, batch_size=BATCH, work_dir=tmp / edge_id)
    try:
        out[edge_id] = EdgeTrainer(engine, data, link, cfg, RunProgress("run-1")).run()
        link.flush(timeout=120)
    except Exception as exc:  # noqa: BLE001 - carried to the test thread, which fails on it
        out[edge_id] = exc
    finally:
        link.close("done")


def run_fleet(bundle_dir: Path, tmp: Path, *, restart_after: int | None) -> tuple[dict, dict]:
    """Three edges on one shared tail; optionally restart the host once the tail has taken
    `restart_after` steps. Returns (edge reports, final host report)."""
    host = RestartingHost(bundle_dir, tmp / "host", CONFIG)
    server = host.start()
    steps_seen: list[int] = []
    assert server.shared is not None
    server.shared.trainer.optimizer.register_step_post_hook(
        lambda *_: steps_seen.append(1)  # counts the real optimizer steps of the first life
    )
    out: dict = {}
    threads = [
        threading.Thread(target=run_edge, args=(bundle_dir, host, e, i, tmp, out))
        for i, e in enumerate(EDGES)
    ]
    for t in threads:
        t.start()
    if restart_after is not None:
        deadline = time.monotonic() + 300
        while len(steps_seen) < restart_after and time.monotonic() < deadline:
            time.sleep(0.005)
        first = host.stop()
        out["steps_before_restart"] = first.shared_report()["steps"]
        server = host.start()
    for t in threads:
        t.join(timeout=600)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
        e["done"] for e in server.report()["edges"] if e["edge_id"] in EDGES
    ):
        time.sleep(0.02)
    host.stop()
    out["optimizer_steps_first_life"] = len(steps_seen)
    return out, server.report()


def assert_each_batch_once(host: dict, per_edge: int) -> None:
    assert not host["errors"]
    by_id = {e["edge_id"]: e for e in host["edges"]}
    assert sorted(by_id) == sorted(EDGES)
    for edge_id in EDGES:
        one = by_id[edge_id]
        assert one["done"]
        assert sorted(map(tuple, one["trained_ids"])) == [(0, i) for i in range(per_edge)]
        assert one["unique_batches_trained"] == per_edge
    shared = host["shared_tail"]
    assert [e["edge_id"] for e in shared["edges"]] == sorted(EDGES)
    assert shared["steps"] == per_edge * len(EDGES)  # one tail: every edge's batches, once
    assert host["batches_trained_cloud"] == per_edge * len(EDGES)


def test_three_edges_train_one_tail_exactly_once(bundle_dir: Path, tmp_path: Path) -> None:
    per_edge = num_batches(load_dataset(f"synthetic:{SAMPLES}", seed=0), "train", BATCH)
    out, host = run_fleet(bundle_dir, tmp_path, restart_after=None)
    for edge_id in EDGES:
        assert isinstance(out[edge_id], dict), out[edge_id]
    assert_each_batch_once(host, per_edge)
    # The optimizer of the one tail stepped once per batch of every edge: nothing per edge.
    assert out["optimizer_steps_first_life"] == per_edge * len(EDGES)
    # One checkpoint, no per-edge tails.
    assert [p.name for p in (tmp_path / "host").iterdir() if not p.name.endswith(".prev")] == [
        "shared-tail.fleet"
    ]


def test_host_restart_mid_run_resumes_every_edge_exactly_once(
    bundle_dir: Path, tmp_path: Path
) -> None:
    per_edge = num_batches(load_dataset(f"synthetic:{SAMPLES}", seed=0), "train", BATCH)
    out, host = run_fleet(bundle_dir, tmp_path, restart_after=10)
    for edge_id in EDGES:
        assert isinstance(out[edge_id], dict), out[edge_id]
    assert 10 <= out["steps_before_restart"] < per_edge * len(EDGES)  # really mid-run
    assert_each_batch_once(host, per_edge)


def test_one_edges_checkpoint_covers_every_edge(bundle_dir: Path, tmp_path: Path) -> None:
    """A checkpoint made for edge A holds B's cursor too: the tail has learnt B's batch, so a
    restarted host must not take it again (B's resent copy is a duplicate)."""
    bundle = load_bundle(bundle_dir)
    shape = (4, *bundle.manifest["activation"]["shape"])
    rng = np.random.default_rng(0)
    act = rng.standard_normal(shape).astype(np.float32)
    labels = np.arange(4) % bundle.manifest["num_classes"]
    server = CloudServer(bundle, tmp_path, key=bundle.key(), shared_tail=True)
    a, b = server.edge("a", "r"), server.edge("b", "r")
    assert a.trainer is b.trainer and a.lock is b.lock
    with a.lock:
        a.train(0, 0, act, labels)
        a.last_seq = 1
        b.train(0, 0, act, labels)
        b.last_seq = 1
        a.checkpoint()  # only A commits
    assert b.consumed_seq == 1
    weights = {k: v.clone() for k, v in a.trainer.tail.state_dict().items()}
    again = SharedTail(bundle, tmp_path)
    assert again.steps == 2
    assert again.saved[("b", "r")]["trained"] == [0, 0]
    for k, v in again.trainer.tail.state_dict().items():
        assert torch.equal(v, weights[k])
    restarted = CloudServer(bundle, tmp_path, key=bundle.key(), shared_tail=True)
    b2 = restarted.edge("b", "r")
    with b2.lock:
        assert b2.train(0, 0, act, labels) is None and b2.duplicates == 1
    assert restarted.shared_report()["edges"] == [
        {"edge_id": "a", "run_id": "r"},
        {"edge_id": "b", "run_id": "r"},
    ]


def test_shared_and_per_edge_checkpoints_never_mix(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_dir)
    server = CloudServer(bundle, tmp_path, key=bundle.key(), shared_tail=True)
    with server.edge("a", "r").lock:
        server.edge("a", "r").checkpoint()
    with pytest.raises(StateError, match="serve with --shared-tail"):
        CloudServer(bundle, tmp_path, key=bundle.key())
    with pytest.raises(ValueError, match="trains no tail"):
        CloudServer(bundle, tmp_path, key=bundle.key(), mode="cloud", shared_tail=True)
