"""Hierarchical inference on a trained model: the board's edge.onnx answers confident samples,
the host's tail.onnx the rest, over the real link (socket pair); nothing hangs when the host
goes away."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import read_key_file, sha256_file
from edge_runtime.data import load_dataset
from edge_runtime.errors import UsageFault
from edge_runtime.infer.model_dir import ModelDirError
from edge_runtime.infer.policy import ExitPolicy, calibrate, check_fraction
from edge_runtime.infer.runner import EdgeModel, InferRun, infer_report
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.link.transports import socket_pair
from host.infer.server import InferServer


@pytest.fixture(scope="module")
def model_dir(trained) -> Path:
    """The model directory of the shared short run (conftest.py)."""
    return trained[3]


def _connect(model_dir: Path, tmp: Path, edge_end) -> EdgeLink:
    return EdgeLink.connect(
        "pair:",
        key=read_key_file(model_dir / "link.key"),
        bundle_sha256=sha256_file(model_dir / "model.json"),
        edge_id="board",
        run_id="infer-1",
        spool_dir=tmp / "spool",
        config=LinkConfig(read_timeout=0.05, reconnect_timeout=2.0),
        opener=lambda: edge_end,
    )


class _Tap:
    """A wiretap on the edge's end of the stream: every byte the board writes."""

    def __init__(self, inner) -> None:
        self._inner, self.sent = inner, bytearray()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def write(self, data: bytes) -> None:
        self.sent += data
        self._inner.write(data)


def _infer(
    model_dir: Path,
    tmp: Path,
    threshold: float,
    *,
    kill_after: int | None = None,
    tap: list | None = None,
):
    data = load_dataset_from(model_dir)
    x, y = data
    config = LinkConfig(read_timeout=0.05)
    edge_end, host_end = socket_pair(config.read_timeout)
    if tap is not None:
        edge_end = _Tap(edge_end)
        tap.append(edge_end)
    server = InferServer(model_dir, key=read_key_file(model_dir / "link.key"), config=config)
    server.serve_transport(host_end)
    link = _connect(model_dir, tmp, edge_end)
    policy = ExitPolicy(threshold, "fixed")
    run = InferRun(EdgeModel(model_dir, threads=1), policy, link, answer_timeout_s=3.0)
    if kill_after is not None:
        original = run.model.__call__

        class Killing:
            n = 0

        def call(batch):
            Killing.n += 1
            if Killing.n == kill_after:
                server.close()
                host_end.close()
            return original(batch)

        run.model = _Wrapped(run.model, call)
    t0 = time.perf_counter()
    try:
        answers = run.run(x)
    finally:
        link.close("done")
        server.close()
    return infer_report(answers, y, run, time.perf_counter() - t0), server


class _Wrapped:
    def __init__(self, inner, call) -> None:
        self._inner, self._call = inner, call

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, x):
        return self._call(x)


DIGITS: dict[str, Path] = {}


def load_dataset_from(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset(str(DIGITS["path"]), seed=0)
    return data.normalise(data.x_test), data.y_test


@pytest.fixture(autouse=True)
def _digits(digits_path) -> None:
    DIGITS["path"] = digits_path


def test_every_sample_answered_once_and_agrees_with_the_table(model_dir, tmp_path) -> None:
    desc = json.loads((model_dir / "model.json").read_text())
    (row,) = [r for r in desc["early_exit"] if r["threshold"] == 0.9]
    report, server = _infer(model_dir, tmp_path, 0.9)
    _, y = load_dataset_from(model_dir)
    assert report["samples"] == len(y) and len(report["predictions"]) == len(y)
    assert report["answers"]["cloud"] == server.answered  # each offload answered once
    assert report["answers"]["degraded"] == 0 and not report["degraded"]
    assert abs(report["fraction_at_edge"] - row["fraction_at_edge"]) <= 0.01
    assert abs(report["accuracy"] - row["accuracy"]) <= 0.01
    assert report["bytes_up"] > 0 and report["latency_ms"]["p99"] >= report["latency_ms"]["p50"]


def test_wiretap_finds_no_raw_input(model_dir, tmp_path) -> None:
    from edge_runtime.link.framing import FrameDecoder

    taps: list = []
    report, _ = _infer(model_dir, tmp_path, 0.9, tap=taps)
    bodies = FrameDecoder(1 << 24, observer=True).feed(bytes(taps[0].sent))
    assert report["answers"]["cloud"] > 0 and len(bodies) > report["answers"]["cloud"]
    wire = b"".join(bodies)
    data = load_dataset(str(DIGITS["path"]), seed=0)
    x, _ = load_dataset_from(model_dir)
    offloaded = [i for i, p in enumerate(report["paths"]) if p == "cloud"]
    for i in offloaded:
        # Neither the stored pixels nor the normalised input of an offloaded sample is on the
        # wire (a 64-byte or 256-byte run would not occur by chance).
        assert data.x_test[i].tobytes() not in wire
        assert x[i].tobytes() not in wire


def test_host_killed_mid_run_rest_answered_locally(model_dir, tmp_path) -> None:
    report, _ = _infer(model_dir, tmp_path, 0.999, kill_after=40)
    _, y = load_dataset_from(model_dir)
    assert report["samples"] == len(y)
    assert report["degraded"] and report["answers"]["degraded"] > 0
    assert report["host_lost"]
    assert report["paths"][-1] in ("edge", "degraded")
    assert report["policy"]["events"][-1]["policy"] == "edge only (degraded)"


def test_calibration_reads_the_table() -> None:
    table = [
        {"threshold": 0.5, "fraction_at_edge": 0.9, "accuracy": 0.80},
        {"threshold": 0.9, "fraction_at_edge": 0.6, "accuracy": 0.90},
        {"threshold": 0.99, "fraction_at_edge": 0.2, "accuracy": 0.95},
    ]
    assert calibrate(table, target_accuracy=0.9, max_offload=None)[0] == 0.9
    assert calibrate(table, target_accuracy=None, max_offload=0.5)[0] == 0.9
    assert calibrate(table, target_accuracy=None, max_offload=0.05)[0] == 0.5
    with pytest.raises(UsageFault, match="between 0 and 1"):
        check_fraction("--threshold", 1.5)


def test_adaptive_policy_answers_at_the_edge_under_backlog() -> None:
    policy = ExitPolicy(0.9, "fixed", latency_budget_s=0.1)
    assert policy.at_edge(0.5, 0) == (False, "offload")  # nothing observed yet
    policy.observed(0.05, 0)  # 50 ms with nothing ahead: base, and service until a queue is seen
    assert policy.at_edge(0.5, 0) == (False, "offload")
    assert policy.at_edge(0.5, 5) == (True, "backlog")  # 300 ms predicted
    assert policy.events and "budget 100.0 ms" in policy.events[0]["why"]
    assert policy.at_edge(0.95, 5) == (True, "confident")


def test_bad_model_dir_and_input_are_one_line(model_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    model = EdgeModel(copy)
    with pytest.raises(ModelDirError, match="inputs of shape 3x8x8, the model takes 1x8x8"):
        model.check_input(np.zeros((2, 3, 8, 8), np.float32))
    (copy / "edge.onnx").write_bytes(b"x")
    with pytest.raises(ModelDirError, match="edge.onnx was altered"):
        EdgeModel(copy)
    (copy / "model.json").unlink()
    with pytest.raises(ModelDirError, match="no model.json"):
        EdgeModel(copy)


def test_the_board_needs_only_model_json_edge_onnx_and_the_key(model_dir, tmp_path) -> None:
    """A board holds model.json, edge.onnx and link.key only (not model.pt, full.onnx,
    tail.onnx): `edge-runtime infer` answers from it against a host holding the whole model.
    A file that is there must still match; the one the board uses must be there."""
    import shutil
    import subprocess
    import sys

    board = tmp_path / "board-model"
    board.mkdir()
    for name in ("model.json", "edge.onnx", "link.key"):
        shutil.copyfile(model_dir / name, board / name)
    server = InferServer(model_dir, key=read_key_file(model_dir / "link.key"))
    host, port = server.serve_tcp("127.0.0.1", 0)
    report = tmp_path / "infer.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edge_runtime.launch", "infer", "--model", str(board)]
            + ["--connect", f"socket://{host}:{port}", "--data", str(DIGITS["path"])]
            + ["--threshold", "0.9", "--limit", "40", "--report", str(report)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["samples"] == 40 and result["answers"]["degraded"] == 0
    assert result["answers"]["cloud"] == server.answered > 0

    (board / "model.pt").write_bytes(b"not the trained weights")
    with pytest.raises(ModelDirError, match="model.pt was altered"):
        EdgeModel(board)
    (board / "model.pt").unlink()
    (board / "edge.onnx").unlink()
    with pytest.raises(ModelDirError, match="edge.onnx is missing"):
        EdgeModel(board)


NO_TORCH = """
import sys
import numpy as np
from edge_runtime.infer.runner import EdgeModel
model = EdgeModel(sys.argv[1], threads=1)
logits, activation = model(np.zeros((2, 1, 8, 8), np.float32))
assert logits.shape == (2, 10), logits.shape
heavy = [m for m in ("torch", "onnx") if m in sys.modules]
assert not heavy, heavy
"""


def test_the_board_infers_without_torch_or_onnx(model_dir) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(model_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_demo_infer_answers_the_test_split(model_dir, digits_path, tmp_path) -> None:
    """`hostctl demo --infer`'s last step: the tail served here, `edge-runtime infer` as its own
    process over local TCP, one line of figures."""
    import io

    from rich.console import Console

    from host.infer.demo import run_infer_demo

    out = io.StringIO()
    report = run_infer_demo(model_dir, str(digits_path), tmp_path, Console(file=out, width=200))
    assert report["samples"] == 360 and sum(report["answers"].values()) == 360
    assert report["answers"]["cloud"] > 0 and not report["degraded"]
    assert out.getvalue().startswith("inference: 360 samples") and "answered at the edge" in (
        out.getvalue()
    )


def test_unreachable_host_everything_answered_at_the_edge_degraded(model_dir, tmp_path) -> None:
    """No host at the address: the board does not hang; it answers every sample from the exit,
    each marked degraded, and the report says why."""
    import socket

    from edge_runtime.infer.command import PolicyOptions, run_infer

    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    said: list[str] = []
    report = run_infer(
        model_dir,
        f"socket://127.0.0.1:{port}",
        str(DIGITS["path"]),
        policy_options=PolicyOptions(threshold=0.9),
        codec="fp32",
        key_file=None,
        edge_id="board",
        connect_timeout=1.0,
        answer_timeout=3.0,
        baud=115200,
        limit=None,
        report_path=tmp_path / "infer.json",
        say=said.append,
    )
    assert report["samples"] == 360 and report["answers"]["cloud"] == 0
    # Confident samples are the exit's answer anyway; the rest are degraded.
    assert report["answers"]["degraded"] > 0 and report["degraded"]
    assert report["answers"]["edge"] + report["answers"]["degraded"] == 360
    assert report["host_lost"].startswith("host unreachable")
    assert any("answering every sample at the edge (degraded)" in line for line in said)
    assert json.loads((tmp_path / "infer.json").read_text())["host_lost"] == report["host_lost"]
