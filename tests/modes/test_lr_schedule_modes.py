"""Both halves follow the bundle's learning-rate schedule, in every mode that trains, and a run
resumed mid-epoch lands on its epoch's rate: the edge's training loop and the host's server run
for real in one process over a socket pair (as test_modes_inprocess.py); the rates are read
from the optimizers themselves (ORT's own `get_learning_rate`, torch's param groups) while
they train."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_runtime.bundle import load_bundle
from edge_runtime.data import load_dataset
from edge_runtime.engines import make_engine
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.link.transports import socket_pair
from edge_runtime.modes import mode_spec
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from edge_runtime.train.schedule import LrSchedule
from host.cloud.server import CloudServer
from host.cloud.tail import TailTrainer

LR = 4e-3
EPOCHS = 3
SPEC = f"cosine:epochs={EPOCHS},warmup=1,floor=0.2"  # rates 0.5, 1, 0.6 x LR
SAMPLES = 160  # synthetic: 80% train -> 4 batches of 32
LINK = LinkConfig(read_timeout=0.05)


def expected(epoch: int) -> float:
    return LrSchedule.parse(SPEC).lr(LR, epoch)


@pytest.fixture(scope="module")
def bundle_dir(exported) -> Path:
    return exported("smallcnn", 2, lr=LR, lr_schedule=SPEC, baselines=True)


def edge_lr(engine) -> float:
    """The rate the engine's optimizer itself holds."""
    if engine.name == "ort":
        return float(engine._optimizer.get_learning_rate())
    return float(engine._optimizer.param_groups[0]["lr"])


@pytest.fixture
def tail_rates(monkeypatch) -> list[float]:
    """The host tail's rate at each training step, in the order the steps ran."""
    seen: list[float] = []
    step, step_split = TailTrainer.train_step, TailTrainer.train_step_split

    def spy(self, *args):  # noqa: ANN001, ANN202
        seen.append(float(self.optimizer.param_groups[0]["lr"]))
        return step(self, *args)

    def spy_split(self, *args):  # noqa: ANN001, ANN202
        seen.append(float(self.optimizer.param_groups[0]["lr"]))
        return step_split(self, *args)

    monkeypatch.setattr(TailTrainer, "train_step", spy)
    monkeypatch.setattr(TailTrainer, "train_step_split", spy_split)
    return seen


class Pair:
    """One host and the edge runs that connect to it (a reconnection opens a new pair)."""

    def __init__(self, bundle_dir: Path, tmp: Path, mode: str) -> None:
        self.bundle = load_bundle(bundle_dir)
        self.edge_bundle = load_bundle(bundle_dir / "edge")
        self.tmp, self.mode = tmp, mode
        self.server = CloudServer(
            self.bundle, tmp / "host", key=self.bundle.key(), mode=mode, config=LINK
        )

    def link(self) -> EdgeLink:
        def open_() -> object:
            edge_end, host_end = socket_pair(LINK.read_timeout)
            self.server.serve_transport(host_end)
            return edge_end

        return EdgeLink.connect(
            "pair:",
            key=self.bundle.key(),  # the server shares the bundle's key (its default)
            bundle_sha256=self.edge_bundle.manifest_sha256,
            edge_id="edge-1",
            run_id="run-1",
            spool_dir=self.tmp / "edge" / "spool",
            config=LINK,
            opener=open_,
        )

    def train(
        self, engine_kind: str, progress: RunProgress, stop_at: tuple[int, int] | None = None
    ) -> tuple[dict, dict[tuple[int, int], float]]:
        """One edge run (stopped after batch `stop_at` if given); the engine's rate at each
        train batch it trained, by (epoch, index)."""
        work = self.tmp / "edge"
        variant = mode_spec(self.mode).engine_variant
        engine = make_engine(engine_kind, self.edge_bundle, threads=1, variant=variant)
        if (checkpoint := progress.check_engine_checkpoint(work)) is not None:
            engine.load_checkpoint(checkpoint)
        rates: dict[tuple[int, int], float] = {}
        stop = threading.Event()

        def on_batch(phase: str, epoch: int, done: int, *_: object) -> None:
            if phase == "train":
                rates[(epoch, done - 1)] = edge_lr(engine)
                if (epoch, done - 1) == stop_at:
                    stop.set()

        cfg = EdgeRunConfig(epochs=EPOCHS, batch_size=32, mode=self.mode, work_dir=work)
        data = load_dataset(f"synthetic:{SAMPLES}", seed=0)
        link = self.link()
        try:
            report = EdgeTrainer(
                engine, data, link, cfg, progress, stop=stop, on_batch=on_batch
            ).run()
            if not stop.is_set():
                link.flush(timeout=120)
        finally:
            link.close("stopped" if stop.is_set() else "done")
        return report, rates

    def host_report(self) -> dict:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
            e["done"] for e in self.server.report()["edges"]
        ):
            time.sleep(0.02)
        self.server.stop()
        return self.server.report()


@pytest.mark.parametrize(("mode", "engine"), [("hierarchical", "torch"), ("split", "ort")])
def test_both_halves_follow_the_schedule(
    bundle_dir: Path, tmp_path: Path, tail_rates: list[float], mode: str, engine: str
) -> None:
    pair = Pair(bundle_dir, tmp_path, mode)
    report, rates = pair.train(engine, RunProgress("run-1"))
    host = pair.host_report()
    assert not report["stopped_early"] and not host["errors"]
    assert rates == {k: pytest.approx(expected(k[0]), rel=1e-6) for k in rates}
    assert sorted({e for e, _ in rates}) == list(range(EPOCHS))
    (one,) = host["edges"]
    trained = [tuple(i) for i in one["trained_ids"]]
    assert len(trained) == len(tail_rates) == EPOCHS * 4
    assert tail_rates == [pytest.approx(expected(e), rel=1e-9) for e, _ in trained]
    assert len(set(tail_rates)) == EPOCHS  # the warm-up and the cosine: three distinct rates


def test_a_run_resumed_mid_epoch_lands_on_its_epochs_rate(
    bundle_dir: Path, tmp_path: Path, tail_rates: list[float]
) -> None:
    """Stopped after batch 1 of epoch 2, resumed from progress.json + the ORT checkpoint: ORT
    reopens the optimizer at the bundle's lr, so the resumed batches show that the loop set
    epoch 2's rate again, and the host's tail trains them at the same one."""
    pair = Pair(bundle_dir, tmp_path, "hierarchical")
    first, before = pair.train("ort", RunProgress("run-1"), stop_at=(2, 1))
    assert first["stopped_early"]
    saved = RunProgress.load(tmp_path / "edge")
    assert saved is not None and (saved.epoch, saved.next_index) == (2, 2)
    resumed, after = pair.train("ort", saved)
    host = pair.host_report()
    # The stopped session may leave while the host still answers its last EPOCH_END: the host
    # notes the undelivered METRICS (the resumed session gets them); nothing else may go wrong.
    assert all("metrics not delivered" in e for e in host["errors"]), host["errors"]
    assert min(after) == (2, 2)  # it went on where it stopped
    assert after[(2, 2)] == pytest.approx(expected(2), rel=1e-6)
    assert expected(2) != pytest.approx(LR)  # (the bundle's lr would not pass for it)
    for k, lr in {**before, **after}.items():
        assert lr == pytest.approx(expected(k[0]), rel=1e-6), k
    (one,) = host["edges"]
    trained = [tuple(i) for i in one["trained_ids"]]
    assert sorted(trained) == [(e, i) for e in range(EPOCHS) for i in range(4)]
    assert tail_rates == [pytest.approx(expected(e), rel=1e-9) for e, _ in trained]


def test_the_end_to_end_trainer_follows_it(bundle_dir: Path) -> None:
    """`--mode edge` (and the convergence benchmark's end-to-end column): the whole network."""
    runner = mode_spec("edge").edge_class()(load_bundle(bundle_dir / "edge"), threads=1)
    rates = []

    def on_epoch(epoch: int, *_: object) -> None:
        rates.append((epoch, runner.trainer.optimizer.param_groups[0]["lr"]))

    runner.run(load_dataset(f"synthetic:{SAMPLES}", seed=0), EPOCHS, 32, on_epoch=on_epoch)
    assert rates == [(e, pytest.approx(expected(e), rel=1e-9)) for e in range(EPOCHS)]


def test_a_run_of_another_length_than_the_cosine_says_so(bundle_dir: Path, caplog) -> None:
    runner = mode_spec("edge").edge_class()(load_bundle(bundle_dir / "edge"), threads=1)
    with caplog.at_level("WARNING", logger="hiertrain.edge"):
        runner.run(load_dataset(f"synthetic:{SAMPLES}", seed=0), EPOCHS + 1, 32)
    (line,) = [r.getMessage() for r in caplog.records if "lr schedule" in r.getMessage()]
    assert f"spans {EPOCHS} epochs and this run trains {EPOCHS + 1}" in line
    assert runner.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * LR)  # floor
