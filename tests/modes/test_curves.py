"""Training curves: the host writes both sides' scalars as TensorBoard event files, readable by
tensorboard's own reader, and `hostctl report` draws them as a PNG.

Both halves run in one process over a `socket_pair`, as tests/modes/test_modes_inprocess.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from edge_runtime.bundle import load_bundle
from edge_runtime.data import load_dataset
from edge_runtime.engines import make_engine
from edge_runtime.link import LinkConfig
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from host.cli import cli
from host.cloud.server import CloudServer
from host.report.curves import CurveWriter

EPOCHS = 2


def _train(bundle_dir: Path, tmp: Path) -> None:
    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(bundle_dir / "edge")
    config = LinkConfig(read_timeout=0.05)
    curves = CurveWriter(tmp / "run")
    server = CloudServer(bundle, tmp / "run", key=bundle.key(), config=config, on_event=curves)
    link = server.connect_in_process(edge_bundle, tmp / "edge" / "spool")
    cfg = EdgeRunConfig(epochs=EPOCHS, batch_size=32, work_dir=tmp / "edge")
    try:
        engine = make_engine("ort", edge_bundle, threads=1, variant="train")
        data = load_dataset("synthetic:160", seed=0)
        EdgeTrainer(engine, data, link, cfg, RunProgress("run-1")).run()
        link.flush(timeout=60)
    finally:
        link.close("done")
    deadline = time.monotonic() + 60  # a guard: the host ends the run when it has everything
    while not all(e["done"] for e in server.report()["edges"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    server.stop()
    curves.close()


def test_event_files_hold_both_sides_and_report_draws_them(exported, tmp_path) -> None:
    _train(exported("smallcnn", 2), tmp_path)
    (log_dir,) = {p.parent for p in (tmp_path / "run" / "tensorboard").rglob("events.*")}
    assert log_dir.name == "edge-1-run-1"
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    per_epoch = {
        "exit/train_loss",  # measured on the board, sent with EPOCH_END
        "exit/train_accuracy",
        "exit/test_accuracy",
        "final/train_loss",  # measured on the host
        "final/train_accuracy",
        "final/test_accuracy",
    }
    assert per_epoch <= tags, tags
    for tag in per_epoch:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == list(range(EPOCHS)), tag
        assert all(e.value >= 0 for e in events), tag
    for tag in ("exit/train_accuracy", "exit/test_accuracy", "final/test_accuracy"):
        assert all(0 <= e.value <= 1 for e in acc.Scalars(tag)), tag
    assert len(acc.Scalars("final/batch_loss")) == EPOCHS * 4  # 128 train samples / 32
    assert acc.Scalars("link/rate_kBps") and all(e.value > 0 for e in acc.Scalars("link/rate_kBps"))

    out = CliRunner().invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    png = tmp_path / "curves-edge-1-run-1.png"
    assert out.output.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_directory_without_curves_is_a_usage_error(tmp_path) -> None:
    out = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert out.exit_code == 2
    assert "holds no TensorBoard event files" in out.output
