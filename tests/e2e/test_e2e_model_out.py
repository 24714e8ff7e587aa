"""The trained model out with real processes: `hostctl serve --model-out` at a run's end, and
`hostctl model` from the checkpoints both sides left when SIGKILLed mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import torch
from e2e_harness import ENV, run_edge, spawn_edge, start_cloud, wait_until

from edge_runtime.bundle import load_bundle
from edge_runtime.engines.ort_engine import OrtEngine
from host.cloud.edge_state import EdgeState


def test_serve_model_out_writes_a_checked_model(exported, digits_path, tmp_path) -> None:
    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    cloud = start_cloud(bundle, tmp_path, "--model-out", str(tmp_path / "model"))
    edge = run_edge(bundle, cloud.url, tmp_path, "--data", str(digits_path), "--epochs", "1")
    report = cloud.finish()
    log = cloud.proc.stdout.read() + cloud.log.read_text()
    assert log.count("✓") == 3 and "✗" not in log, log
    desc = json.loads((tmp_path / "model" / "model.json").read_text())
    assert desc["final_accuracy"] == report["final_accuracy"]
    assert desc["edge_exit_accuracy"] == edge["edge_exit_accuracy"]
    # The weights travelled as messages: the edge's bytes up include them.
    weights = sum(
        np.prod(v.shape) * 4
        for v in torch.load(tmp_path / "model" / "model.pt", weights_only=True)["edge"].values()
    )
    assert edge["model_parts_sent"] == 1 and edge["bytes_up"] > weights


def test_model_from_checkpoints_after_sigkill(exported, digits_path, tmp_path) -> None:
    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    cloud = start_cloud(bundle, tmp_path)
    work = tmp_path / "edge-work"
    edge = spawn_edge(
        bundle,
        cloud.url,
        tmp_path,
        "--data",
        str(digits_path),
        "--epochs",
        "30",
        stderr=subprocess.DEVNULL,
    )
    try:
        state_dir = tmp_path / "cloud-state"
        wait_until(
            lambda: (work / "engine.ckpt").exists() and any(state_dir.glob("*.ckpt")),
            240,
            "a checkpoint on both sides",
        )
    finally:
        for proc in (edge, cloud.proc):
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    out = tmp_path / "model"
    result = subprocess.run(
        [sys.executable, "-m", "host.cli", "model", "--bundle", str(bundle),
         "--edge-checkpoint", str(work / "engine.ckpt"), "--host-state", str(state_dir),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("✓") == 3
    saved = torch.load(out / "model.pt", weights_only=True)
    # Read back independently: the ort engine on its checkpoint, the host's own state loader.
    engine = OrtEngine(load_bundle(bundle / "edge"), threads=1)
    engine.load_checkpoint(work / "engine.ckpt")
    front = engine.export_weights()
    assert set(front) == set(saved["edge"])
    for k, v in front.items():
        assert np.array_equal(saved["edge"][k].numpy(), v), k
    (path,) = state_dir.glob("*.ckpt")
    state = EdgeState.open(load_bundle(bundle), state_dir, "board0", path.stem.split("+")[1])
    for k, v in state.trainer.tail.state_dict().items():
        assert torch.equal(saved["tail"][k], v), k
