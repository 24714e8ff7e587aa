"""The ort and torch engines train the same front the same way; the ort path stays light."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edge_runtime.bundle import load_bundle
from edge_runtime.engines import EngineError, make_engine, resolve_engine_name
from edge_runtime.engines.parity import ACT_REL, LOSS_ATOL, compare


@pytest.mark.parametrize(
    ("model", "split", "optimizer", "lr"),
    [("smallcnn", 2, "adamw", 1e-3), ("resnet18", 3, "adamw", 1e-3), ("resnet18", 3, "sgd", 0.05)],
)
def test_ort_and_torch_engines_agree_over_five_steps(exported, model, split, optimizer, lr) -> None:
    shape = (3, 32, 32)
    edge = load_bundle(exported(model, split, optimizer=optimizer, lr=lr) / "edge")
    rng = np.random.default_rng(42)
    batches = [
        (rng.standard_normal((8, *shape)).astype(np.float32), rng.integers(0, 10, 8))
        for _ in range(5)
    ]
    runs = {}
    for kind in ("ort", "torch"):
        engine = make_engine(kind, edge, threads=2)
        runs[kind] = [engine.train_step(x, y) for x, y in batches]
    for step, (a, b) in enumerate(zip(runs["ort"], runs["torch"], strict=True)):
        assert abs(a.loss - b.loss) < LOSS_ATOL, (step, a.loss, b.loss)
        rel = np.linalg.norm(a.activation - b.activation) / np.linalg.norm(b.activation)
        assert rel < ACT_REL[optimizer], (step, rel)


@pytest.mark.parametrize("kind", ["ort", "torch"])
def test_checkpoint_round_trip(exported, tmp_path, kind) -> None:
    edge = load_bundle(exported("smallcnn", 2) / "edge")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    engine = make_engine(kind, edge)
    for _ in range(3):
        engine.train_step(x, y)
    engine.save_checkpoint(tmp_path / "ckpt")
    saved = engine.export_weights()
    next_loss = engine.train_step(x, y).loss  # moves on past the checkpoint

    fresh = make_engine(kind, edge)
    fresh.load_checkpoint(tmp_path / "ckpt")
    restored = fresh.export_weights()
    for k, v in saved.items():
        np.testing.assert_array_equal(restored[k], v, err_msg=k)
    # Optimizer state came back too: the next step is the same step.
    assert fresh.train_step(x, y).loss == pytest.approx(next_loss, abs=1e-5)
    with pytest.raises(EngineError, match="does not exist"):
        fresh.load_checkpoint(tmp_path / "missing")


def test_engine_names() -> None:
    assert resolve_engine_name("auto") == "ort"  # onnxruntime-training is installed here
    with pytest.raises(EngineError, match="use one of auto, ort, torch"):
        resolve_engine_name("tflite")


def test_ort_engine_imports_neither_torch_nor_onnx(exported) -> None:
    edge = exported("smallcnn", 2) / "edge"
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from edge_runtime.bundle import load_bundle
        from edge_runtime.engines import make_engine
        engine = make_engine("auto", load_bundle({str(edge)!r}))
        engine.train_step(np.zeros((2, 3, 32, 32), np.float32), np.zeros(2, np.int64))
        engine.eval_step(np.zeros((2, 3, 32, 32), np.float32))
        heavy = sorted(m for m in ("torch", "onnx", "models", "host") if m in sys.modules)
        print(engine.name, heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ort []"


def test_broken_artifact_is_an_engine_error(exported, tmp_path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(exported("smallcnn", 2), copy)
    (copy / "edge" / "training_model.onnx").write_bytes(b"not onnx")
    bundle = load_bundle(copy / "edge", verify=False)  # skip hashes to reach the engine
    with pytest.raises(EngineError, match="could not load the edge artifacts"):
        make_engine("ort", bundle)


def test_parity_probe_one_engine_per_process(exported, tmp_path) -> None:
    """`python -m edge_runtime.engines.parity`, the probe the HIL suite runs on a board: each
    engine in its own interpreter (ort without torch or onnx), results that agree, and
    `compare` that notices when they do not."""
    edge = exported("smallcnn", 2) / "edge"
    runs = {}
    for kind in ("ort", "torch"):
        out = tmp_path / f"{kind}.npz"
        done = subprocess.run(
            [sys.executable, "-m", "edge_runtime.engines.parity", "--bundle", str(edge),
             "--engine", kind, "--out", str(out), "--threads", "2"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs[kind] = dict(np.load(out))
        assert runs[kind]["losses"].shape == (5,) and float(runs[kind]["peak_rss_mb"]) > 0
    assert str(runs["ort"]["heavy_modules"]) == "[]"
    assert compare(runs["ort"], runs["torch"]) == []
    off = {**runs["torch"], "losses": runs["torch"]["losses"] + 0.01}
    assert any("loss" in p for p in compare(runs["ort"], off))


def test_ort_sessions_sleep_instead_of_spinning() -> None:
    """The shipped session options: all threads asked for, all optimisations, and idle
    intra-op workers that do not spin (they would take CPU from the link's own threads)."""
    import onnxruntime as ort

    from edge_runtime.engines.ort_engine import session_options

    opts = session_options(2)
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
