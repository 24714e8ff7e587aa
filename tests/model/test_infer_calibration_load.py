"""Calibration on a held-out validation split, and the adaptive policy under a burst of
arrivals: real ONNX Runtime sessions on both ends, the host in process behind real TCP (through
the user-space link emulator for the burst). No wall-clock assertions: the burst test asserts
on the policy changes and answer counts the runs recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edge_runtime.infer.runner as runner_module
from edge_runtime.bundle import read_key_file, sha256_file
from edge_runtime.data import load_dataset
from edge_runtime.errors import UsageFault
from edge_runtime.infer.arrivals import Arrivals, parse_burst
from edge_runtime.infer.calibration import validation_split
from edge_runtime.infer.command import PolicyOptions, run_infer
from edge_runtime.infer.policy import ExitPolicy, calibrate, exit_table
from edge_runtime.infer.runner import EdgeModel, InferRun, infer_report
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.train.loop import softmax_confidence
from host.infer.server import InferServer
from host.linkemu.shaper import shaped


@pytest.fixture(scope="module")
def model_dir(trained) -> Path:
    """The model directory of the shared short run (conftest.py)."""
    return trained[3]


@pytest.fixture
def server(model_dir):
    """The inference host on real TCP, in process."""
    srv = InferServer(model_dir, key=read_key_file(model_dir / "link.key"))
    host, port = srv.serve_tcp("127.0.0.1", 0)
    srv.url = f"socket://{host}:{port}"
    yield srv
    srv.close()


def _two_sigma(p: float, n: int) -> float:
    """Two binomial standard errors of a fraction p measured on n samples: the tolerance
    between a figure calibrated on one split and measured on another of n samples."""
    return 2 * math.sqrt(max(p * (1 - p), 1e-4) / n)


def _infer(
    model_dir: Path, url: str, digits: Path, tmp: Path, arrivals: Arrivals | None = None, **policy
) -> dict:
    return run_infer(
        model_dir,
        url,
        str(digits),
        policy_options=PolicyOptions(**policy),
        codec="fp32",
        key_file=None,
        edge_id="board",
        connect_timeout=10.0,
        answer_timeout=30.0,
        baud=115200,
        limit=None,
        report_path=tmp / "infer.json",
        arrivals=arrivals,
        say=lambda *_: None,
    )


def test_validation_split_is_fixed_disjoint_and_complete() -> None:
    a, b = validation_split(360), validation_split(360)
    assert len(a.validation) == 180 and len(a.answered) == 180
    assert np.array_equal(a.validation, b.validation)  # the same on every run
    assert not set(a.validation) & set(a.answered)
    assert sorted([*a.validation, *a.answered]) == list(range(360))
    assert len(validation_split(5000).validation) == 1000  # default cap
    assert len(validation_split(360, 60).answered) == 300
    for bad in (0, 360):
        with pytest.raises(UsageFault, match="--calibration-samples"):
            validation_split(360, bad)
    with pytest.raises(UsageFault, match="only goes with"):
        PolicyOptions(threshold=0.9, calibration_samples=50)


def _validation_figures(model_dir: Path, digits: Path):
    """Per validation sample, computed here without the link: exit confidence, exit correct,
    full model correct (edge.onnx and full.onnx in their own sessions)."""
    data = load_dataset(str(digits), seed=0)
    split = validation_split(len(data.y_test))
    x = data.normalise(data.x_test)[split.validation]
    y = data.y_test[split.validation]
    edge = ort.InferenceSession(str(model_dir / "edge.onnx"), providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(str(model_dir / "full.onnx"), providers=["CPUExecutionProvider"])
    exit_logits = edge.run(None, {edge.get_inputs()[0].name: x})[0]
    final_logits = full.run(None, {full.get_inputs()[0].name: x})[0]
    return softmax_confidence(exit_logits), exit_logits.argmax(1) == y, final_logits.argmax(1) == y


def test_target_accuracy_is_calibrated_on_validation_and_holds_on_the_rest(
    model_dir, server, digits_path, tmp_path
) -> None:
    conf, exit_ok, final_ok = _validation_figures(model_dir, digits_path)
    # A target between the exit's and the full model's accuracy: the threshold must offload.
    target = round(float(exit_ok.mean() + final_ok.mean()) / 2, 3)
    report = _infer(model_dir, server.url, digits_path, tmp_path, target_accuracy=target)
    cal = report["calibration"]
    answered = 360 - cal["validation_samples"]
    assert report["samples"] == answered == 180
    assert not set(cal["answered_indices"]) & set(validation_split(360).validation.tolist())
    # The threshold is the one the validation samples alone give (computed here independently).
    expected, _ = calibrate(
        exit_table(conf, exit_ok, final_ok), target_accuracy=target, max_offload=None
    )
    assert cal["threshold"] == pytest.approx(expected, abs=1e-6)
    assert report["policy"]["source"].startswith("calibrated on validation")
    assert cal["validation_accuracy"] >= target
    # On the held-out answered samples: the target within two binomial standard errors, and as
    # much answered at the edge as on validation (the same tolerance).
    assert report["accuracy"] >= target - _two_sigma(target, answered)
    f = cal["validation_fraction_at_edge"]
    assert 0 < f < 1 and abs(report["fraction_at_edge"] - f) <= _two_sigma(f, answered)
    # The host saw the validation pass and the answering run's offloads, nothing else; its
    # report (hostctl serve --infer --report) says so per edge, in the shared report shape.
    assert server.answered == cal["validation_samples"] + report["answers"]["cloud"]
    host = server.report(1.0, "tcp").as_dict()
    assert (host["mode"], host["role"], host["link"]) == ("infer", "cloud", "tcp")
    assert (host["model"], host["split"]) == (report["model"], report["split"])
    (edge,) = host["edges"]
    assert edge["edge_id"] == "board" and edge["answered"] == host["answered"] == server.answered
    assert host["bytes_up"] == edge["bytes_up"] > report["bytes_up"] + cal["bytes_up"] * 0.9
    assert report["bytes_up"] > 0 and cal["bytes_up"] > report["bytes_up"]
    assert (
        json.loads((tmp_path / "infer.json").read_text())["calibration"]["threshold"]
        == (cal["threshold"])
    )


def test_max_offload_is_calibrated_on_validation_and_holds_on_the_rest(
    model_dir, server, digits_path, tmp_path
) -> None:
    budget = 0.3
    report = _infer(
        model_dir,
        server.url,
        digits_path,
        tmp_path,
        Arrivals(400.0),  # open loop for the answering run (the calibration pass is closed)
        max_offload=budget,
        calibration_samples=120,
    )
    assert report["arrivals"] == {"kind": "open loop, evenly spaced", "rate_per_s": 400.0}
    cal = report["calibration"]
    assert cal["validation_samples"] == 120 and report["samples"] == 240
    assert 1 - cal["validation_fraction_at_edge"] <= budget
    offloaded = report["answers"]["cloud"] / report["samples"]
    assert offloaded <= budget + _two_sigma(budget, report["samples"])
    assert offloaded > 0  # the highest threshold within the budget offloads some


def test_burst_parsing_and_arrival_times() -> None:
    assert parse_burst("4:10:5") == (4.0, 10, 5)
    for bad in ("4", "x:1:2", "4:1:0"):
        with pytest.raises(UsageFault, match="--burst"):
            parse_burst(bad)
    times = Arrivals(10.0, 4.0, 3, 2).times(6)
    assert np.allclose(np.diff(times), [0.1, 0.1, 0.025, 0.025, 0.1])
    assert Arrivals().times(6) is None
    with pytest.raises(UsageFault, match="--burst needs --rate"):
        Arrivals(None, 4.0, 0, 10)


# The burst scenario. An offload costs about 840 bytes on the wire (a 512-byte fp32 activation,
# framing, ids, acks): about 5 a second at 32 kbit/s. At threshold 0.99 about two thirds of the
# samples are offloaded, so about 7 samples/s are sustainable; they arrive at 4/s, then 50 at
# 28/s (about 4x), then at 4/s again. Without the adaptive policy a backlog of offloads builds
# in the burst; with a 500 ms budget the board must answer at the edge from some point in the
# burst, and go back to the threshold once the backlog drains.
LINK = "32kbit/20ms"
RATE, BURST = 4.0, (7.0, 20, 50)
SAMPLES = 100
BUDGET_S = 0.5


def _burst_run(model_dir: Path, digits: Path, tmp: Path, budget_s: float | None) -> dict:
    data = load_dataset(str(digits), seed=0)
    x, y = data.normalise(data.x_test)[:SAMPLES], data.y_test[:SAMPLES]
    server = InferServer(model_dir, key=read_key_file(model_dir / "link.key"))
    relay = shaped(server.serve_tcp("127.0.0.1", 0), LINK)
    relay.start()
    link = EdgeLink.connect(
        relay.url,
        key=read_key_file(model_dir / "link.key"),
        bundle_sha256=sha256_file(model_dir / "model.json"),
        edge_id="board",
        run_id=f"burst-{budget_s}",
        spool_dir=tmp / f"spool-{budget_s}",
        config=LinkConfig(reconnect_timeout=10.0),
    )
    policy = ExitPolicy(0.99, "fixed", budget_s)
    run = InferRun(
        EdgeModel(model_dir, threads=1),
        policy,
        link,
        # Shorter than the backlog's worst wait (seconds, without the adaptive policy) but far
        # longer than the gaps between answers: a slow host that keeps answering is kept.
        answer_timeout_s=1.5,
        arrivals=Arrivals(RATE, *BURST),
    )
    try:
        answers = run.run(x)
    finally:
        link.close("done")
        relay.stop()
        server.close()
    return infer_report(answers, y, run, 0.0)


def test_adaptive_policy_answers_at_the_edge_under_a_burst(model_dir, digits_path, tmp_path):
    fixed = _burst_run(model_dir, digits_path, tmp_path, None)
    adaptive = _burst_run(model_dir, digits_path, tmp_path, BUDGET_S)
    for r in (fixed, adaptive):
        assert r["samples"] == SAMPLES and not r["degraded"]
        assert sum(r["answers"].values()) == SAMPLES
    assert "backlog" not in fixed["answers_by_reason"] and not fixed["policy"]["events"]
    assert fixed["host_lost"] is None and adaptive["host_lost"] is None
    assert adaptive["answers_by_reason"].get("backlog", 0) >= 5
    assert adaptive["answers"]["edge"] > fixed["answers"]["edge"]
    events = adaptive["policy"]["events"]
    start, count = BURST[1], BURST[2]
    first = events[0]
    # Nothing before the burst pushes the prediction past the budget; the burst does, and the
    # record says when (sample, time) and why (the prediction against the budget).
    assert first["policy"] == "edge-answers-all" and start <= first["sample"] < start + count
    assert "> budget 500.0 ms" in first["why"] and first["t_s"] > 0
    back = [e for e in events if e["policy"].startswith("threshold")]
    assert back and back[-1]["sample"] > first["sample"]  # it returns once the backlog drains
    assert adaptive["arrivals"]["burst"]["rate_per_s"] == RATE * BURST[0]


def test_adaptive_prediction_is_base_plus_backlog_times_service() -> None:
    policy = ExitPolicy(0.9, "fixed", latency_budget_s=0.3)
    assert policy.predicted_s(3) is None  # nothing observed: offload
    policy.observed(0.1, 0, now=10.0)  # nothing ahead: 100 ms is the base latency
    assert policy.predicted_s(0) == pytest.approx(0.1)
    assert policy.predicted_s(2) == pytest.approx(0.3)  # no queue seen yet: service = base
    policy.observed(0.35, 1, now=10.2)  # one ahead, answered 200 ms after the previous answer
    assert policy.predicted_s(2) == pytest.approx(0.1 + 2 * 0.2)
    assert policy.at_edge(0.5, 0, sample=7) == (False, "offload")
    assert policy.at_edge(0.5, 2, sample=8) == (True, "backlog")
    assert policy.at_edge(0.5, 0, sample=9) == (False, "offload")
    # Latency counts from arrival: a sample that waited 250 ms for a busy board would miss the
    # budget with nothing ahead of it (100 + 250 ms > 300 ms).
    assert policy.at_edge(0.5, 0, sample=10, waited_s=0.25) == (True, "backlog")
    assert "waited 250.0 ms" in policy.events[-1]["why"]
    assert [(e["sample"], e["policy"]) for e in policy.events] == [
        (8, "edge-answers-all"),
        (9, "threshold 0.9"),
        (10, "edge-answers-all"),
    ]


def test_pacing_takes_the_typical_call_not_a_preempted_one(monkeypatch) -> None:
    """--slowdown X makes a sample take X times the median edge.onnx call: a call preempted by
    this machine's other work is not stretched X-fold. time.sleep is captured, not slept."""
    slept: list[float] = []
    monkeypatch.setattr(runner_module.time, "sleep", slept.append)
    run = InferRun(None, ExitPolicy(0.9, "fixed"), None, slowdown=16.0)  # type: ignore[arg-type]
    for call_s in (0.001, 0.001, 0.001, 0.010):
        run._pace(call_s)
    assert slept[:3] == pytest.approx([0.015] * 3)
    assert slept[3] == pytest.approx(0.016 - 0.010)  # 16 x the 1 ms median, less the call
    run._pace(0.050)  # longer than 16 x the median: no sleep at all
    assert slept[4] == 0.0
    InferRun(None, ExitPolicy(0.9, "fixed"), None)._pace(0.001)  # type: ignore[arg-type]
    assert len(slept) == 5  # no slowdown: no pacing
