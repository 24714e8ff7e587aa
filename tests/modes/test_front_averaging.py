"""Front averaging in a shared-tail fleet (`hostctl serve --shared-tail --average-fronts-every`).

In-process like test_modes_inprocess.py (`host.bench.fleet.run_fleet`): real EdgeTrainers with
real engines (ONNX Runtime sessions, or torch) on real link sessions over `socket_pair`, one
CloudServer with one shared tail and its FrontAverager, each edge in a thread. The messages'
wire forms are checked on bytes.
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
from edge_runtime.engines import EngineError, make_engine
from edge_runtime.link import EdgeLink
from edge_runtime.link.codecs import encode_tensor, pack_ints
from edge_runtime.link.header import Header, MsgType
from edge_runtime.link.messages import decode_message
from edge_runtime.link.transports import socket_pair
from edge_runtime.model_messages import ModelWeights, weight_messages
from edge_runtime.train.averaging import AveragingSchedule
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from edge_runtime.train.messages import Batch, EvalBatch
from host.bench.fleet import LINK, run_fleet, split_non_iid
from host.cloud.modes.averaging import fedavg
from host.cloud.server import CloudServer
from host.model.collect import averaged_model_out


def roundtrip(msg):
    payload = msg.encode()
    return decode_message(Header(type=msg.TYPE, length=len(payload)), payload), payload


# -- the wire -------------------------------------------------------------------------------------


def test_batch_says_its_front_version_and_version_zero_keeps_the_old_bytes() -> None:
    labels = np.array([1, 2, 3])
    act = np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2)
    old_layout = (
        np.array([0, 5], dtype=">u4").tobytes()
        + pack_ints(labels, compact=True)
        + encode_tensor(act, "int8")
    )
    assert Batch(0, 5, labels, act, "int8").encode() == old_layout  # old hosts read it as ever
    for cls in (Batch, EvalBatch):
        back, payload = roundtrip(cls(2, 7, labels, act, "fp32", front_version=41))
        assert type(back) is cls and back.front_version == 41
        assert (back.epoch, back.index, back.labels.tolist()) == (2, 7, [1, 2, 3])
        assert (
            np.array_equal(back.tensor, act)
            and len(payload) == len(cls(2, 7, labels, act, "fp32").encode()) + 5
        )
    assert roundtrip(Batch(0, 0, labels, act))[0].front_version == 0


def test_weights_message_carries_a_round_only_when_it_is_one() -> None:
    w = {"front.a": np.ones((2, 3), np.float32), "exit_head.b": np.arange(4, dtype=np.int64)}
    model_out = weight_messages(w, {"classes": ["x"]})[0]
    assert b"round" not in model_out.encode()  # a model out is the bytes it was before
    up = weight_messages(w, {}, round=3, samples=96, last=True)[0]
    back, _ = roundtrip(up)
    assert (back.round, back.samples, back.last) == (3, 96, True)
    assert back.nbytes == 2 * 3 * 4 + 4 * 8
    assert np.array_equal(back.tensors["exit_head.b"], w["exit_head.b"])
    bad = ModelWeights(0, 1, w, {}, round=2, samples=-1)
    with pytest.raises(Exception, match="samples"):
        decode_message(Header(type=MsgType.MODEL_WEIGHTS, length=len(p := bad.encode())), p)


def test_fedavg_weights_by_samples_and_rounds_integer_buffers() -> None:
    a = {"w": np.array([0.0, 4.0], np.float32), "n": np.array(10, np.int64)}
    b = {"w": np.array([4.0, 0.0], np.float32), "n": np.array(13, np.int64)}
    avg = fedavg([(a, 30), (b, 10)])
    assert avg["w"].dtype == np.float32 and np.allclose(avg["w"], [1.0, 3.0])
    assert avg["n"].dtype == np.int64 and int(avg["n"]) == 11  # 10.75 rounds to 11
    assert np.allclose(fedavg([(a, 0), (b, 0)])["w"], [2.0, 2.0])  # no counts: equal weights


def test_schedule_parses_and_names_the_form() -> None:
    assert AveragingSchedule.parse("20batches") == AveragingSchedule(20, "batches")
    assert AveragingSchedule.parse("1 epoch") == AveragingSchedule(1, "epochs")
    for bad in ("0batches", "5", "batches", "3 steps"):
        with pytest.raises(ValueError, match=r"N\{batches\|epochs\}"):
            AveragingSchedule.parse(bad)


# -- a fleet in one process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(exported) -> Path:
    return exported("smallcnn", 2)


@pytest.mark.parametrize("engine", ["ort", "torch"])
def test_averaging_round_trip_makes_the_fronts_identical(
    bundle_dir: Path, tmp_path: Path, engine: str
) -> None:
    """3 edges, a round every 2 batches of 8: four rounds, the last at the end of training."""
    datasets = {f"cam-{i}": load_dataset("synthetic:160", seed=i) for i in range(3)}
    per_edge = num_batches(datasets["cam-0"], "train", 16)
    assert per_edge == 8
    run = run_fleet(
        bundle_dir,
        datasets,
        tmp_path,
        epochs=1,
        batch_size=16,
        average_every="2batches",
        engine=engine,
        timeout=600,
    )
    edges, host = run.edges, run.host
    assert not host["errors"]
    averaging = host["shared_tail"]["front_averaging"]
    assert averaging["version"] == 4 and len(averaging["rounds"]) == 4
    assert all(r["closed_by"] == "all" and not r["missing"] for r in averaging["rounds"])
    assert [sorted(r["samples"]) for r in averaging["rounds"]] == [sorted(datasets)] * 4
    assert all(set(r["samples"].values()) == {32} for r in averaging["rounds"])

    # After adopting the last average, every edge's front + exit is the host's average.
    final = run.server.averaging.latest
    for edge_id, eng in run.engines.items():
        weights = eng.export_weights()
        # Integer buffers (the torch engine's BatchNorm batch counters) are not weights and
        # stay local; every other tensor is the average.
        assert sorted(weights) == sorted(final) or engine == "torch", edge_id
        assert all(weights[k].dtype.kind == "i" for k in set(weights) - set(final))
        for name, value in final.items():
            assert np.array_equal(weights[name], value), (edge_id, name)
        report = edges[edge_id]["front_averaging"]
        assert report["adopted"] == [1, 2, 3, 4] and report["front_version"] == 4
        assert report["rounds"] == 4
    # Each activation named the front that produced it: two batches per version 0..3.
    assert averaging["front_versions"] == {e: {"0": 2, "1": 2, "2": 2, "3": 2} for e in datasets}

    # Bytes: four fronts up and four averages down per edge, counted on both sides, inside the
    # link's wire totals.
    front_bytes = sum(v.nbytes for v in final.values())
    for edge_id in datasets:
        report = edges[edge_id]["front_averaging"]
        assert report["bytes_up"] == 4 * front_bytes == report["bytes_down"]
        assert edges[edge_id]["bytes_up"] > report["bytes_up"]
        assert edges[edge_id]["bytes_down"] > report["bytes_down"]
    assert averaging["bytes_up"] == averaging["bytes_down"] == 3 * 4 * front_bytes
    assert host["bytes_down"] > averaging["bytes_down"]

    # Exactly once per edge, as without averaging.
    for one in host["edges"]:
        assert sorted(map(tuple, one["trained_ids"])) == [(0, i) for i in range(per_edge)]
        assert one["duplicates_dropped"] == 0
    assert host["shared_tail"]["steps"] == 3 * per_edge


def test_epoch_schedule_and_the_average_outlives_the_host(bundle_dir: Path, tmp_path: Path) -> None:
    """Rounds at epoch ends; WELCOME names the version; a restarted host keeps the average."""
    datasets = {f"cam-{i}": load_dataset("synthetic:160", seed=i) for i in range(2)}
    run = run_fleet(
        bundle_dir, datasets, tmp_path, epochs=2, batch_size=32, average_every="1epochs"
    )
    host = run.host
    averaging = host["shared_tail"]["front_averaging"]
    assert averaging["version"] == 2
    per_epoch = num_batches(datasets["cam-0"], "train", 32)
    assert averaging["front_versions"] == {e: {"0": per_epoch, "1": per_epoch} for e in datasets}
    server = run.server
    assert server.averaging.welcome() == {"every": 1, "unit": "epochs", "version": 2}
    # --model-out of an averaging fleet: one model, the averaged front on the shared tail.
    averaged_model_out(
        server.bundle, server.states(), server.averaging.latest, tmp_path / "model", say=print
    )
    saved = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    for name, value in server.averaging.latest.items():
        assert np.array_equal(saved["edge"][name].numpy(), value), name
    assert not (tmp_path / "model" / "cam-0").exists()
    # The averaged front is in the shared checkpoint: a restarted host goes on from it.
    again = CloudServer(
        server.bundle,
        tmp_path / "host",
        key=server.bundle.key(),
        shared_tail=True,
        average_fronts=AveragingSchedule(1, "epochs"),
    )
    assert again.averaging.version == 2
    for name, value in server.averaging.latest.items():
        assert np.array_equal(again.averaging.latest[name], value)


def test_averaging_needs_a_shared_tail(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_dir)
    with pytest.raises(ValueError, match="needs --shared-tail"):
        CloudServer(
            bundle, tmp_path, key=bundle.key(), average_fronts=AveragingSchedule(1, "epochs")
        )


# -- the test: real digits, four edges, non-identical class mixes ------------------------

DIGITS_EPOCHS = 4
HOME_SHARE = 0.7  # each class sends 70% of its samples to one edge, 10% to each other


def test_on_real_digits_sharing_beats_alone_and_averaging_beats_sharing(
    exported, digits_path: Path, tmp_path: Path
) -> None:
    """The train split of the UCI digits cut across 4 edges, each holding mostly its own
    classes; every edge scored on the whole test split. Measured here (4 epochs of smallcnn):
    alone 0.64 on average, shared tail 0.81, shared tail with averaging each epoch 0.92; the
    margins below are a fraction of those gaps."""
    bundle_dir = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    parts = split_non_iid(load_dataset(str(digits_path), seed=0), 4, HOME_SHARE)
    datasets = {f"board-{k}": p for k, p in enumerate(parts)}
    mixes = [np.bincount(p.y_train, minlength=10) for p in parts]
    for k, mix in enumerate(mixes):  # non-identical mixes: mostly its own classes
        assert mix[np.arange(10) % 4 == k].sum() > 0.6 * mix.sum(), mix
    kw = {"epochs": DIGITS_EPOCHS, "batch_size": 32, "timeout": 900}

    alone = [
        run_fleet(bundle_dir, {e: d}, tmp_path / f"alone-{e}", shared_tail=False, **kw)
        for e, d in datasets.items()
    ]
    alone_acc = float(np.mean([r.final_accuracy() for r in alone]))
    shared = run_fleet(bundle_dir, datasets, tmp_path / "shared", **kw)
    averaged = run_fleet(bundle_dir, datasets, tmp_path / "avg", average_every="1epochs", **kw)
    shared_acc, averaged_acc = shared.final_accuracy(), averaged.final_accuracy()

    assert shared.host["shared_tail"]["front_averaging"] is None
    assert averaged.host["shared_tail"]["front_averaging"]["version"] == DIGITS_EPOCHS
    # With averaging every edge ends on the one averaged front (their accuracies still differ
    # a little: each edge normalises inputs by its own split's statistics).
    final = averaged.server.averaging.latest
    for eng in averaged.engines.values():
        assert all(np.array_equal(v, final[k]) for k, v in eng.export_weights().items())
    assert shared_acc >= alone_acc - 0.02, (shared_acc, alone_acc)
    assert averaged_acc >= shared_acc - 0.02, (averaged_acc, shared_acc)
    assert averaged_acc >= alone_acc + 0.05, (averaged_acc, alone_acc)


def test_serve_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    cases = {
        ("--shared-tail", "--average-fronts-every", "3steps"): "expected N{batches|epochs}",
        ("--average-fronts-every", "1epochs"): "needs --shared-tail and --mode hierarchical",
        ("--shared-tail", "--mode", "split", "--average-fronts-every", "2batches"): (
            "needs --shared-tail and --mode hierarchical"
        ),
    }
    for args, expected in cases.items():
        out = subprocess.run(
            [sys.executable, "-m", "host.cli", "serve", "--bundle", str(tmp_path), "--listen"]
            + ["tcp://127.0.0.1:0", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and expected in lines[0], (args, out.stderr)


def test_an_edge_that_finishes_early_is_not_waited_for(bundle_dir: Path, tmp_path: Path) -> None:
    """cam-b has half the batches: its last round is the fleet's second; rounds 3 and 4 are
    cam-a's alone, closed without waiting for an edge that will send no more."""
    datasets = {
        "cam-a": load_dataset("synthetic:160", seed=0),
        "cam-b": load_dataset("synthetic:80", seed=1),
    }
    assert [num_batches(d, "train", 16) for d in datasets.values()] == [8, 4]
    run = run_fleet(
        bundle_dir, datasets, tmp_path, epochs=1, batch_size=16, average_every="2batches"
    )
    rounds = run.host["shared_tail"]["front_averaging"]["rounds"]
    assert [sorted(r["samples"]) for r in rounds] == [
        ["cam-a", "cam-b"],
        ["cam-a", "cam-b"],
        ["cam-a"],
        ["cam-a"],
    ]
    assert all(r["closed_by"] == "all" and not r["missing"] for r in rounds)
    assert run.edges["cam-b"]["front_averaging"]["adopted"] == [1, 2]
    assert run.edges["cam-a"]["front_averaging"]["adopted"] == [1, 2, 3, 4]


def test_host_restart_mid_run_loses_no_round_and_no_batch(bundle_dir: Path, tmp_path: Path) -> None:
    """Three edges, a round every 4 of 16 batches; the host is stopped and started again once
    the first average is out. The contributions it had not closed a round with were never
    acknowledged, so the edges send them again; every batch is trained once per edge, and every
    edge ends on the host's last average."""
    host = RestartingHost(
        bundle_dir, tmp_path / "host", LINK, average_fronts=AveragingSchedule(4, "batches")
    )
    server = host.start()
    edge_bundle = load_bundle(bundle_dir / "edge")
    edges = ("cam-a", "cam-b", "cam-c")
    engines = {e: make_engine("ort", edge_bundle, threads=1) for e in edges}
    out: dict = {}

    def run(edge_id: str, seed: int) -> None:
        link = EdgeLink.connect(
            "pair:",
            key=host.bundle.key(),
            bundle_sha256=edge_bundle.manifest_sha256,
            edge_id=edge_id,
            run_id="run-1",
            spool_dir=tmp_path / edge_id / "spool",
            config=LINK,
            opener=host.open_,
        )
        cfg = EdgeRunConfig(epochs=1, batch_size=16, work_dir=tmp_path / edge_id, round_timeout=300)
        data = load_dataset("synthetic:320", seed=seed)
        try:
            out[edge_id] = EdgeTrainer(
                engines[edge_id], data, link, cfg, RunProgress("run-1")
            ).run()
            link.flush(timeout=120)
        except Exception as exc:  # noqa: BLE001 - carried to the test thread, which fails on it
            out[edge_id] = exc
        finally:
            link.close("done")

    threads = [threading.Thread(target=run, args=(e, i)) for i, e in enumerate(edges)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    while server.averaging.version < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    first = host.stop()
    assert 1 <= first.averaging.version < 4  # really mid-run
    server = host.start()
    assert server.averaging.version == first.averaging.version  # the average was on disk
    for t in threads:
        t.join(timeout=600)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(e["done"] for e in server.report()["edges"]):
        time.sleep(0.02)
    host.stop()
    report = server.report()
    for edge_id in edges:
        assert isinstance(out[edge_id], dict), out[edge_id]
    by_id = {e["edge_id"]: e for e in report["edges"]}
    for edge_id in edges:
        assert sorted(map(tuple, by_id[edge_id]["trained_ids"])) == [(0, i) for i in range(16)]
    assert report["shared_tail"]["steps"] == 3 * 16
    final = server.averaging.latest
    assert server.averaging.version >= 4
    for edge_id, eng in engines.items():
        weights = eng.export_weights()
        assert all(np.array_equal(v, final[k]) for k, v in weights.items()), edge_id
        assert out[edge_id]["front_averaging"]["front_version"] == server.averaging.version


def test_a_round_closes_without_a_straggler_after_the_round_timeout(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """cam-b computes as a board 200x slower: the host does not wait past its round timeout.
    The average goes to cam-b too, which adopts it at its next batch, so cam-b's own weights go
    to the next round. Every batch is still trained once per edge."""
    datasets = {f"cam-{c}": load_dataset("synthetic:80", seed=i) for i, c in enumerate("ab")}
    run = run_fleet(
        bundle_dir,
        datasets,
        tmp_path,
        epochs=1,
        batch_size=16,
        average_every="2batches",
        round_timeout=0.3,
        slowdown={"cam-b": 200.0},
    )
    averaging = run.host["shared_tail"]["front_averaging"]
    timed_out = [r for r in averaging["rounds"] if r["closed_by"] == "timeout"]
    assert timed_out and all(r["missing"] == ["cam-b"] for r in timed_out), averaging["rounds"]
    slow = run.edges["cam-b"]["front_averaging"]
    assert slow["rounds"] == 2  # it sent its weights at both its boundaries and got answers
    # A round it missed, adopted at a batch boundary while it trained.
    assert {r["version"] for r in timed_out} & set(slow["adopted"])
    assert not run.host["errors"]
    for one in run.host["edges"]:
        assert sorted(map(tuple, one["trained_ids"])) == [(0, i) for i in range(4)]


def scripted_host(bundle_dir: Path, tmp_path: Path, **options: object) -> CloudServer:
    """A shared-tail host averaging every epoch, for edges scripted by the test."""
    return CloudServer(
        load_bundle(bundle_dir),
        tmp_path / "host",
        key=load_bundle(bundle_dir).key(),
        config=LINK,
        shared_tail=True,
        average_fronts=AveragingSchedule(1, "epochs"),
        **options,
    )


def scripted_edge(server: CloudServer, bundle_dir: Path, tmp_path: Path, edge_id: str) -> EdgeLink:
    """A real link session to `server` for an edge whose messages the test writes."""
    edge_end, host_end = socket_pair(LINK.read_timeout)
    server.serve_transport(host_end)
    return EdgeLink.connect(
        "pair:",
        key=load_bundle(bundle_dir).key(),
        bundle_sha256=load_bundle(bundle_dir / "edge").manifest_sha256,
        edge_id=edge_id,
        run_id="run-1",
        spool_dir=tmp_path / edge_id / "spool",
        config=LINK,
        opener=lambda: edge_end,
    )


def front(value: float, shape: tuple[int, ...] = (2, 2)) -> dict[str, np.ndarray]:
    """Front + exit weights of one value, as a scripted edge sends them."""
    return {"front.w": np.full(shape, value, np.float32), "exit_head.b": np.ones(3, np.float32)}


def await_front(link: EdgeLink, version: int, timeout: float = 60) -> ModelWeights:
    """The host's averaged front of `version`, as a scripted edge receives it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = link.poll(0.1)
        if isinstance(msg, ModelWeights) and msg.round == version:
            return msg
    raise AssertionError(f"no average of version {version}")


def test_rounds_on_the_wire_weighted_late_left_and_refused(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """Two scripted edges on real link sessions send weights the test chose, so every figure
    is exact: the samples-weighted mean, a late copy answered with the latest average, a round
    that closes when the edge it waited for leaves, and weights of another shape refused."""
    server = scripted_host(bundle_dir, tmp_path)
    a, b = (scripted_edge(server, bundle_dir, tmp_path, e) for e in ("cam-a", "cam-b"))
    assert a.welcome_resume["front_averaging"] == {"every": 1, "unit": "epochs", "version": 0}
    try:
        a.send(weight_messages(front(1.0), {}, round=1, samples=30)[0])
        b.send(weight_messages(front(5.0), {}, round=1, samples=10)[0])
        for link in (a, b):  # (30 x 1 + 10 x 5) / 40
            assert np.array_equal(await_front(link, 1).tensors["front.w"], front(2.0)["front.w"])

        b.send(weight_messages(front(9.0), {}, round=1, samples=10)[0])  # round 1 is closed
        assert np.array_equal(await_front(b, 1).tensors["front.w"], front(2.0)["front.w"])

        a.send(weight_messages(front(3.0), {}, round=2, samples=5)[0])
        time.sleep(0.5)
        assert server.averaging.version == 1  # round 2 waits for cam-b ...
        b.close("done")  # ... until cam-b leaves
        assert np.array_equal(await_front(a, 2).tensors["front.w"], front(3.0)["front.w"])

        a.send(weight_messages(front(1.0, (3,)), {}, round=3, samples=5)[0])
        deadline = time.monotonic() + 30
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        a.close("done")
        server.stop()
    report = server.report()["shared_tail"]["front_averaging"]
    assert [r["samples"] for r in report["rounds"]] == [{"cam-a": 30, "cam-b": 10}, {"cam-a": 5}]
    assert report["late_contributions"] == 1 and report["version"] == 2
    assert any("do not fit the fleet's front (front.w differ)" in e for e in server.errors)


def test_the_first_round_waits_for_the_edges_expected(bundle_dir: Path, tmp_path: Path) -> None:
    """Boards started together connect seconds apart: with expect_edges=2, cam-a's first round
    does not close alone before cam-b has even connected; it closes with both."""
    server = scripted_host(bundle_dir, tmp_path, expect_edges=2)
    links = [scripted_edge(server, bundle_dir, tmp_path, "cam-a")]
    try:
        links[0].send(weight_messages(front(1.0), {}, round=1, samples=10)[0])
        time.sleep(1.0)
        assert server.averaging.version == 0  # alone, the fleet is not all there yet
        links.append(scripted_edge(server, bundle_dir, tmp_path, "cam-b"))
        links[1].send(weight_messages(front(3.0), {}, round=1, samples=10)[0])
        for link in links:
            assert np.array_equal(await_front(link, 1).tensors["front.w"], front(2.0)["front.w"])
    finally:
        for link in links:
            link.close("done")
        server.stop()
    rounds = server.report()["shared_tail"]["front_averaging"]["rounds"]
    assert [(r["samples"], r["closed_by"]) for r in rounds] == [({"cam-a": 10, "cam-b": 10}, "all")]


def test_both_engines_train_on_the_weights_they_load(bundle_dir: Path) -> None:
    """An adopted front is what the next step trains: the ORT training session (CheckpointState
    buffers, no torch) and the torch engine compute the same loss as the engine the weights
    came from, and the same activation."""
    edge_bundle = load_bundle(bundle_dir / "edge")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *edge_bundle.manifest["input_shape"])).astype(np.float32)
    y = np.arange(8) % edge_bundle.manifest["num_classes"]
    source = make_engine("ort", edge_bundle, threads=1)
    for _ in range(3):
        source.train_step(x, y)
    trained = source.export_weights()
    for kind in ("ort", "torch"):
        engine = make_engine(kind, edge_bundle, threads=1)
        before = engine.eval_step(x, y).activation
        floats = {k: v for k, v in trained.items() if v.dtype.kind == "f"}
        merged = {**engine.export_weights(), **floats}
        engine.load_weights(merged)
        assert not np.allclose(before, engine.eval_step(x, y).activation)
        ref, got = source.eval_step(x, y), engine.eval_step(x, y)
        assert np.allclose(ref.activation, got.activation, atol=1e-4), kind
        assert abs(source.train_step(x, y).loss - engine.train_step(x, y).loss) < 1e-4, kind
        source.load_weights(trained)  # back to the same start for the next engine
    bad = {**trained, "front.conv1.conv.weight": np.zeros((1, 1), np.float32)}
    with pytest.raises(EngineError, match="front.conv1.conv.weight"):
        source.load_weights(bad)


def test_a_stopped_edge_resumes_from_its_front_version(bundle_dir: Path, tmp_path: Path) -> None:
    """cam-a stops after 6 of its 16 batches (a round every 4) and comes back with --resume
    semantics (progress.json + engine checkpoint): it goes on from the front version it had
    adopted, never from the bundle's, rejoins the rounds, and every batch of both edges is
    trained once."""
    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(bundle_dir / "edge")
    server = CloudServer(
        bundle,
        tmp_path / "host",
        key=bundle.key(),
        config=LINK,
        shared_tail=True,
        average_fronts=AveragingSchedule(4, "batches"),
    )

    def connect(edge_id: str) -> EdgeLink:
        def open_() -> object:
            edge_end, host_end = socket_pair(LINK.read_timeout)
            server.serve_transport(host_end)
            return edge_end

        return EdgeLink.connect(
            "pair:",
            key=bundle.key(),
            bundle_sha256=edge_bundle.manifest_sha256,
            edge_id=edge_id,
            run_id="run-1",
            spool_dir=tmp_path / edge_id / "spool",
            config=LINK,
            opener=open_,
        )

    def train(edge_id: str, seed: int, progress: RunProgress, stop_after: int | None) -> dict:
        engine = make_engine("ort", edge_bundle, threads=1)
        work = tmp_path / edge_id
        if (checkpoint := progress.check_engine_checkpoint(work)) is not None:
            engine.load_checkpoint(checkpoint)
        stop = threading.Event()

        def on_batch(phase: str, epoch: int, done: int, *_: object) -> None:
            if phase == "train" and stop_after is not None and epoch * 8 + done == stop_after:
                stop.set()

        link = connect(edge_id)
        cfg = EdgeRunConfig(epochs=2, batch_size=16, work_dir=work, round_timeout=300)
        data = load_dataset("synthetic:160", seed=seed)
        try:
            report = EdgeTrainer(
                engine, data, link, cfg, progress, stop=stop, on_batch=on_batch
            ).run()
            if not stop.is_set():  # a stopped run leaves the rest in its spool for the resume
                link.flush(timeout=120)
        finally:
            link.close("stopped" if stop.is_set() else "done")
        return report

    out: dict = {}

    def run_b() -> None:
        try:
            out["cam-b"] = train("cam-b", 1, RunProgress("run-1"), None)
        except Exception as exc:  # noqa: BLE001 - carried to the test thread
            out["cam-b"] = exc

    b = threading.Thread(target=run_b)
    b.start()
    first = train("cam-a", 0, RunProgress("run-1"), stop_after=6)
    assert first["stopped_early"] and first["front_averaging"]["adopted"] == [1]
    saved = RunProgress.load(tmp_path / "cam-a")
    assert saved is not None and (saved.epoch, saved.next_index) == (0, 6)
    assert saved.extra["front_version"] == 1
    resumed = train("cam-a", 0, saved, None)
    b.join(timeout=600)
    assert isinstance(out["cam-b"], dict), out["cam-b"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(e["done"] for e in server.report()["edges"]):
        time.sleep(0.02)
    server.stop()
    host = server.report()
    for one in host["edges"]:
        ids = sorted(map(tuple, one["trained_ids"]))
        assert ids == [(e, i) for e in range(2) for i in range(8)], one["edge_id"]
    versions = host["shared_tail"]["front_averaging"]["front_versions"]["cam-a"]
    assert versions["0"] == 4  # only the batches before the first round: never reset to 0
    assert resumed["front_averaging"]["front_version"] >= 2
