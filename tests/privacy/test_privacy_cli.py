"""The privacy options on both command lines: usage errors name the valid range (exit 2), the
audit writes its report and its grid, and the clipped activations are what crosses the link."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_harness import run_edge, start_cloud

from edge_runtime.link.framing import FrameDecoder
from edge_runtime.link.header import MsgType, decode_header
from edge_runtime.train.messages import Batch, EvalBatch
from host.export import ExportOptions, export_bundle
from host.linkemu import Relay, Tap

HOSTCTL = [sys.executable, "-m", "host.cli"]
EDGE = [sys.executable, "-m", "edge_runtime.cli"]


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--dp-clip", "0"], "--dp-clip: clip norm must be a finite number > 0"),
        (
            ["--dp-clip", "1", "--dp-noise", "-0.5"],
            "--dp-noise: noise multiplier must be a finite number >= 0",
        ),
        (["--dp-noise", "1"], "--dp-noise needs --dp-clip"),
        (
            ["--adv-lambda", "-1"],
            "--adv-lambda: adversarial exit weight lambda must be a finite number >= 0",
        ),
        (["--adv-lambda", "1", "--engine", "ort"], "--adv-lambda needs --engine torch"),
    ],
)
def test_edge_run_rejects_bad_privacy_options(
    digits_bundle: Path, argv: list[str], says: str
) -> None:
    out = run([*EDGE, "run", "--bundle", str(digits_bundle / "edge"), *argv])
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["audit", "--bundle", "B", "--data", "synthetic", "--dp-clip", "0"],
            "--dp-clip: clip norm",
        ),
        (
            ["audit", "--bundle", "B", "--data", "synthetic", "--dp-clip", "1", "--dp-noise", "-1"],
            "--dp-noise: noise multiplier must be a finite number >= 0",
        ),
        (["audit", "--bundle", "B", "--data", "synthetic", "--codec", "jpeg"], "fp32, fp16, int8"),
        (
            ["audit", "--bundle", "B", "--data", "synthetic", "--adv-lambda", "-0.5"],
            "--adv-lambda: adversarial exit weight lambda must be a finite number >= 0",
        ),
        (["epsilon", "--dp-noise", "-2", "--epochs", "3"], "finite number >= 0"),
        (
            ["epsilon", "--dp-noise", "1", "--epochs", "3", "--delta", "2"],
            "--delta must be in (0, 1)",
        ),
    ],
)
def test_hostctl_privacy_rejects_bad_options(argv: list[str], says: str) -> None:
    out = run([*HOSTCTL, "privacy", *argv])
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr


def test_epsilon_command_prints_the_accountants_figure() -> None:
    out = run(
        [
            *HOSTCTL,
            "privacy",
            "epsilon",
            "--dp-noise",
            "9.061754234",
            "--epochs",
            "1",
            "--delta",
            "1e-6",
        ]
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["epsilon"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_audit_command_writes_report_grid_and_models(
    digits_bundle: Path, digits_path: Path, tmp_path: Path
) -> None:
    out = run(
        [
            *HOSTCTL, "privacy", "audit", "--bundle", str(digits_bundle), "--data", f"digits:{digits_path}",
            "--codec", "int8", "--stages", "initial", "--victims", "32", "--decoder-epochs", "2",
            "--decoder-width", "16", "--whitebox-steps", "5", "--threads", "1",
            "--dp-clip", "8", "--dp-noise", "1", "--epochs", "4",
            "--report", str(tmp_path / "r.json"), "--out", str(tmp_path / "out"),
            "--model-out", str(tmp_path / "models"),
        ]
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"] == "smallcnn" and report["split"] == 1
    assert report["defence"]["releases_per_sample"] == 4 and report["defence"]["epsilon"] > 0
    assert {r["attack"] for r in report["results"]} == {"learned", "whitebox"}
    assert "best attack on the initial front" in out.stdout
    grid = (tmp_path / "out" / "reconstructions.png").read_bytes()
    assert grid[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "audit.json").is_file()
    assert (tmp_path / "models" / "decoders.pt").is_file()
    assert (tmp_path / "models" / "front_initial.npz").is_file()


def released_activations(capture: bytes) -> list[np.ndarray]:
    """Every activation tensor (BATCH and EVAL_BATCH) in a capture of the edge's upstream."""
    tensors = []
    for body in FrameDecoder(max_frame=64 << 20, observer=True).feed(capture):
        header, payload = decode_header(bytes(body), 64 << 20)
        if header.type == MsgType.BATCH:
            tensors.append(Batch.decode(payload).tensor)
        elif header.type == MsgType.EVAL_BATCH:
            tensors.append(EvalBatch.decode(payload).tensor)
    return tensors


@pytest.mark.slow
def test_clipped_activations_are_what_crosses_the_link(
    digits_bundle: Path, digits_path: Path, tmp_path: Path
) -> None:
    """A wiretap between edge and host: every activation on the wire has the clipped norm."""
    clip = 1e-3  # far below any real activation's norm (~18 at this split): clipping shows
    cloud = start_cloud(digits_bundle, tmp_path)
    tap = Tap()
    relay = Relay(("127.0.0.1", cloud.port), [tap])
    relay.start()
    try:
        edge = run_edge(
            digits_bundle, relay.url, tmp_path, "--data", f"digits:{digits_path}", "--limit", "128", "--epochs", "1",
            "--engine", "torch", "--dp-clip", str(clip), "--dp-noise", "0",
        )  # fmt: skip
        cloud.finish()
    finally:
        relay.stop()
    assert edge["privacy"] == {"dp_clip": clip, "dp_noise": 0.0}
    tensors = released_activations(bytes(tap.captured["up"]))
    assert len(tensors) >= edge["batches_sent"] > 0
    norms = np.concatenate([np.linalg.norm(t.reshape(len(t), -1), axis=1) for t in tensors])
    assert norms.max() <= clip * (1 + 1e-4)
    assert norms.min() > 0.5 * clip  # clipped down to the bound, not zeroed


@pytest.mark.slow
def test_the_bundles_exported_defence_applies_when_the_edge_names_none(
    digits_path: Path, tmp_path: Path
) -> None:
    """`hostctl export --dp-clip` makes clipping the edge's default: a run with no privacy
    options releases clipped activations, and its report says so."""
    clip = 1e-3
    bundle = tmp_path / "bundle"
    export_bundle(
        ExportOptions(model="smallcnn", split=1, input_shape=(1, 8, 8), privacy={"dp_clip": clip}),
        bundle,
    )
    cloud = start_cloud(bundle, tmp_path)
    tap = Tap()
    relay = Relay(("127.0.0.1", cloud.port), [tap])
    relay.start()
    try:
        edge = run_edge(
            bundle, relay.url, tmp_path, "--data", f"digits:{digits_path}", "--limit", "128",
            "--epochs", "1", "--engine", "torch",
        )  # fmt: skip
        cloud.finish()
    finally:
        relay.stop()
    assert edge["privacy"] == {"dp_clip": clip, "dp_noise": 0.0}
    tensors = released_activations(bytes(tap.captured["up"]))
    assert len(tensors) >= edge["batches_sent"] > 0
    norms = np.concatenate([np.linalg.norm(t.reshape(len(t), -1), axis=1) for t in tensors])
    assert norms.max() <= clip * (1 + 1e-4)
