"""The learning-rate schedule: its values, the spec grammar, the manifest entry, and that both
engines really train at the rate it gives (a real ONNX Runtime session, a real torch network)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.engines import make_engine
from edge_runtime.train.schedule import LrSchedule, ScheduleError, length_note, lr_for_epoch

LR = 2e-3


def test_cosine_values_match_torch_cosine_annealing() -> None:
    s = LrSchedule.parse("cosine:epochs=10")
    ours = [s.lr(LR, e) for e in range(10)]
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    theirs = []
    for _ in range(10):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)
    assert s.lr(LR, 0) == LR and s.lr(LR, 5) == pytest.approx(LR / 2)
    assert s.lr(LR, 10) == 0.0 and s.lr(LR, 30) == 0.0  # past the end: held at the floor


def test_warmup_floor_and_step() -> None:
    s = LrSchedule.parse("cosine:epochs=6,warmup=2,floor=0.1")
    assert [s.factor(e) for e in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert s.factor(4) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert s.factor(6) == pytest.approx(0.1)
    step = LrSchedule.parse("step:every=3,gamma=0.5")
    assert [step.factor(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert LrSchedule.parse("constant").constant and LrSchedule().factor(99) == 1.0
    assert not LrSchedule.parse("constant:warmup=1").constant


@pytest.mark.parametrize(
    "spec", ["cosine:epochs=20", "cosine:epochs=8,floor=0.05,warmup=1", "step:every=4,gamma=0.3"]
)
def test_spec_and_manifest_round_trip(spec: str) -> None:
    s = LrSchedule.parse(spec)
    assert LrSchedule.parse(s.spec()) == s
    assert LrSchedule.from_manifest(json.loads(json.dumps(s.to_manifest()))) == s


@pytest.mark.parametrize(
    "spec, words",
    [
        ("linear", "unknown lr schedule 'linear'"),
        ("cosine", "needs epochs=E"),
        ("cosine:epochs=ten", "epochs=ten is not an integer"),
        ("cosine:epochs=5,warmup=5", "leaves nothing"),
        ("cosine:epochs=5,gamma=0.1", "'gamma=0.1' is not one of"),
        ("cosine:epochs=5,floor=2", "must be in 0..1"),
        ("step", "needs every=N"),
        ("step:every=2,gamma=0", "must be in (0, 1]"),
        ("cosine:epochs=5,epochs=6", "epochs given twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ScheduleError) as err:
        LrSchedule.parse(spec)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_an_optimizer_config_without_a_schedule_is_constant() -> None:
    assert [lr_for_epoch({"type": "adamw", "lr": LR}, e) for e in (0, 7, 100)] == [LR] * 3


def test_a_run_longer_or_shorter_than_the_schedule_is_noted() -> None:
    s = LrSchedule.parse("cosine:epochs=10")
    assert length_note(s, 10) is None and length_note(LrSchedule(), 3) is None
    assert "the last 2 at its floor" in (length_note(s, 12) or "")
    assert "before its end" in (length_note(s, 5) or "")


@pytest.fixture(scope="module")
def cosine_bundle(exported) -> Path:
    return exported("smallcnn", 2, lr=LR, lr_schedule="cosine:epochs=4")


def test_export_writes_the_schedule_into_both_halves(cosine_bundle: Path) -> None:
    for half in (cosine_bundle, cosine_bundle / "edge", cosine_bundle / "cloud"):
        m = load_bundle(half).manifest
        for side in ("edge", "cloud"):
            assert m[side]["optimizer"]["schedule"] == {
                "kind": "cosine",
                "epochs": 4,
                "floor": 0.0,
                "warmup": 0,
            }


@pytest.mark.parametrize("kind", ["ort", "torch"])
def test_both_engines_set_the_scheduled_rate_at_each_epoch(cosine_bundle: Path, kind) -> None:
    engine = make_engine(kind, load_bundle(cosine_bundle / "edge"), threads=1)
    expected = [LrSchedule.parse("cosine:epochs=4").lr(LR, e) for e in range(4)]
    got = []
    for epoch in range(4):
        assert engine.begin_epoch(epoch) == pytest.approx(expected[epoch])
        if kind == "ort":
            got.append(engine._optimizer.get_learning_rate())  # ORT's own record of it
        else:
            got.append(engine._optimizer.param_groups[0]["lr"])
    assert got == pytest.approx(expected, rel=1e-6)


def _update(engine, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    before = engine.export_weights()
    engine.train_step(x, y)
    after = engine.export_weights()
    return {k: after[k] - before[k] for k in before if after[k].dtype.kind == "f"}


def test_ort_set_lr_really_changes_the_step(cosine_bundle: Path) -> None:
    """AdamW's first step moves each weight by lr x m/(sqrt(v)+eps): set_lr(lr/2) must halve
    it and set_lr(0) must leave the weights as they were, in ORT's own optimizer graph."""
    edge = load_bundle(cosine_bundle / "edge")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *edge.manifest["input_shape"])).astype(np.float32)
    y = rng.integers(0, edge.manifest["num_classes"], 8).astype(np.int64)
    deltas = {}
    for lr in (LR, LR / 2, 0.0):
        engine = make_engine("ort", edge, threads=1)
        engine.set_lr(lr)
        deltas[lr] = _update(engine, x, y)
    name = max(deltas[LR], key=lambda k: float(np.abs(deltas[LR][k]).sum()))
    full, half = deltas[LR][name], deltas[LR / 2][name]
    assert np.abs(full).max() > 1e-5
    np.testing.assert_allclose(half, full / 2, rtol=1e-3, atol=1e-8)
    trained = [k for k in deltas[LR] if "running" not in k and "num_batches" not in k]
    assert all(np.abs(deltas[0.0][k]).max() == 0 for k in trained)


def test_an_old_manifest_without_a_schedule_trains_at_a_constant_rate(
    cosine_bundle: Path, tmp_path: Path
) -> None:
    from host.cloud.tail import TailTrainer
    from host.export.inspect import _schedule_line

    root = tmp_path / "old"
    shutil.copytree(cosine_bundle, root)
    for manifest in [root / "manifest.json", *root.glob("*/manifest.json")]:
        data = json.loads(manifest.read_text())
        for side in ("edge", "cloud"):
            del data[side]["optimizer"]["schedule"]
        manifest.write_text(json.dumps(data))
    bundle = load_bundle(root)
    engine = make_engine("torch", load_bundle(root / "edge"), threads=1)
    tail = TailTrainer(bundle)
    assert [engine.begin_epoch(e) for e in (0, 3, 9)] == [LR] * 3
    assert [tail.begin_epoch(e) for e in (0, 3, 9)] == [LR] * 3
    assert tail.optimizer.param_groups[0]["lr"] == LR
    assert _schedule_line(bundle.manifest) == "constant (no schedule in the manifest)"


def test_a_broken_schedule_in_a_manifest_is_one_bundle_error(
    cosine_bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "broken"
    shutil.copytree(cosine_bundle, root)
    manifest = root / "edge" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["edge"]["optimizer"]["schedule"] = {"kind": "cosine", "epochs": 0}
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"'edge.optimizer.schedule': .*needs epochs=E"):
        load_bundle(root / "edge")


def test_hostctl_export_refuses_a_bad_schedule_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    for spec, words in (("cosine", "needs epochs=E"), ("warm", "unknown lr schedule 'warm'")):
        out = subprocess.run(
            [sys.executable, "-m", "host.cli", "export", "--model", "smallcnn", "--split", "2",
             "--out", str(tmp_path / "b"), "--lr-schedule", spec],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "--lr-schedule" in lines[0] and words in lines[0], out.stderr
        assert not (tmp_path / "b").exists()


def test_inspect_shows_the_schedule(cosine_bundle: Path) -> None:
    import io

    from rich.console import Console

    from host.export.inspect import bundle_view

    buffer = io.StringIO()
    Console(file=buffer, width=200).print(bundle_view(load_bundle(cosine_bundle)))
    line = next(s for s in buffer.getvalue().splitlines() if "lr schedule" in s)
    assert "cosine:epochs=4 (epoch 0: lr 0.002, epoch 3: lr 0.000293)" in line
