"""The board's side of hierarchical inference: edge.onnx per sample, the exit's answer when the
policy says so, else the activation to the host and its answer back. Imports neither torch nor
onnx: onnxruntime (the inference package, or the training package's) and numpy.

A host that stops answering is given up after `answer_timeout_s`: what it owes and everything
after is answered from the exit and marked degraded, so a run always ends.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.engines.ort_import import inference_runtime
from edge_runtime.infer.arrivals import Arrivals
from edge_runtime.infer.messages import InferAnswer, InferRequest
from edge_runtime.infer.model_dir import EDGE_ONNX, ModelDirError, read_model_dir
from edge_runtime.infer.policy import ExitPolicy
from edge_runtime.link import EdgeLink, LinkError
from edge_runtime.train.loop import softmax_confidence

# Recent edge.onnx call times the board's pacing takes its typical (median) time from.
PACE_WINDOW = 31


class EdgeModel:
    """edge.onnx of a checked model directory, in an onnxruntime session."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        ort = inference_runtime()
        self.description = read_model_dir(model_dir, needs=(EDGE_ONNX,))
        io = self.description["io"][EDGE_ONNX]
        self.input_name = io["inputs"][0]
        self.outputs = io["outputs"]  # exit logits, activation
        self.input_shape = tuple(self.description["input_shape"])
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(Path(model_dir) / EDGE_ONNX), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ORT's own exception classes
            raise ModelDirError(
                f"{model_dir}/{EDGE_ONNX}: onnxruntime cannot load it ({exc})"
            ) from None

    def check_input(self, x: np.ndarray) -> None:
        """ModelDirError (one line) unless samples are (N, *input_shape)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ModelDirError(
                f"inputs of shape {'x'.join(map(str, x.shape[1:]))}, the model takes "
                f"{'x'.join(map(str, self.input_shape))}"
            )

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(exit logits, activation) of a batch."""
        logits, activation = self.session.run(self.outputs, {self.input_name: x})
        return logits, activation


@dataclass
class Answer:
    """One sample's answer: the class, where it came from, how long it took."""

    sample: int
    predicted: int
    path: str  # "edge", "cloud", or "degraded" (the host was meant to answer but could not)
    latency_s: float  # from the sample's arrival to its answer
    reason: str  # confident, backlog, offload, or why the host was given up
    confidence: float = float("nan")  # the exit's (max softmax)
    exit_class: int = -1  # the exit's answer, whoever answered


@dataclass
class InferRun:
    """Answers every sample exactly once, at the edge or from the host."""

    model: EdgeModel
    policy: ExitPolicy
    link: EdgeLink | None
    codec: str = "fp32"
    answer_timeout_s: float = 10.0
    max_pending: int = 64
    arrivals: Arrivals = field(default_factory=Arrivals)
    slowdown: float = 1.0  # board profile: edge.onnx paced to this many times its time here
    answers: dict[int, Answer] = field(default_factory=dict)
    exits: dict[int, tuple[float, int]] = field(default_factory=dict)  # id -> (conf, class)
    host_lost: str | None = None  # why the host was given up, if it was
    _last_heard: float = 0.0  # perf_counter of the host's last answer (or first debt)
    _call_s: deque[float] = field(default_factory=lambda: deque(maxlen=PACE_WINDOW))

    def run(self, x: np.ndarray) -> list[Answer]:
        """Answer samples x[0], x[1], ... as they arrive (`arrivals`); returns the answers by
        sample."""
        self.model.check_input(x)
        # id -> (arrival, exit class, offloads ahead of it, sent at)
        pending: dict[int, tuple[float, int, int, float]] = {}
        if self.link is None and self.host_lost is None:  # keep a reason the caller gave
            self.host_lost = "no host link"
        due = self.arrivals.times(len(x))
        start = time.perf_counter()
        for i in range(len(x)):
            if due is None:
                t0 = time.perf_counter()
            else:
                t0 = start + float(due[i])
                self._wait_until(t0, pending)
            tc = time.perf_counter()
            logits, activation = self.model(x[i : i + 1])
            self._pace(time.perf_counter() - tc)
            conf = float(softmax_confidence(logits)[0])
            exit_class = int(logits.argmax(1)[0])
            self.exits[i] = (conf, exit_class)
            at_edge, why = self.policy.at_edge(
                conf, len(pending), sample=i, waited_s=time.perf_counter() - t0
            )
            if at_edge:
                self._answer(i, exit_class, "edge", t0, why)
            elif self.host_lost is not None:
                self._answer(i, exit_class, "degraded", t0, self.host_lost)
            else:
                self._offload(i, activation, t0, exit_class, pending)
            self._collect(pending, 0.0)
        # The host's last answers: _collect gives up on it once one is owed past the timeout.
        while pending and self.host_lost is None:
            self._collect(pending, 0.05)
        return [self.answers[i] for i in range(len(x))]

    def _pace(self, call_s: float) -> None:
        """Make the sample take `slowdown` times a typical edge.onnx call (the median of the
        recent ones), never less than this call took.

        Not `slowdown` times this call: on a loaded machine a call that was preempted would be
        stretched `slowdown`-fold, and a board's per-sample compute is steady; the other
        processes of this machine are not the board's work.
        """
        if self.slowdown <= 1:
            return
        self._call_s.append(call_s)
        typical = float(np.median(self._call_s))
        time.sleep(max(0.0, self.slowdown * typical - call_s))

    def _wait_until(self, t: float, pending: dict) -> None:
        """Take the host's answers until time `t` (perf_counter), when the next sample arrives."""
        while (left := t - time.perf_counter()) > 0:
            if self.link is None or self.host_lost is not None:
                time.sleep(left)
            else:
                self._collect(pending, min(left, 0.05))

    def _answer(self, i: int, cls: int, path: str, t0: float, why: str) -> None:
        if i in self.answers:  # an answer the host sent after it was given up
            return
        conf, exit_class = self.exits.get(i, (float("nan"), cls))
        self.answers[i] = Answer(i, cls, path, time.perf_counter() - t0, why, conf, exit_class)

    def _offload(
        self, i: int, activation: np.ndarray, t0: float, exit_class: int, pending: dict
    ) -> None:
        while len(pending) >= self.max_pending and self.host_lost is None:
            self._collect(pending, 0.05)
            self._check_stale(pending)
        if self.host_lost is not None:
            self._answer(i, exit_class, "degraded", t0, self.host_lost)
            return
        if not pending:  # the silence clock starts when the host first owes something
            self._last_heard = time.perf_counter()
        pending[i] = (t0, exit_class, len(pending), time.perf_counter())
        try:
            assert self.link is not None
            self.link.send(InferRequest(i, activation, self.codec), timeout=self.answer_timeout_s)
        except LinkError as exc:
            self._lose_host(pending, f"link failed: {exc}")

    def _collect(self, pending: dict, timeout: float) -> None:
        if self.link is None or self.host_lost is not None:
            return
        try:
            msg = self.link.poll(timeout)
            while msg is not None:
                if isinstance(msg, InferAnswer):
                    for k, cls in enumerate(msg.classes):
                        sid = msg.first_id + k
                        if sid in pending:
                            self._last_heard = time.perf_counter()
                            t0, _, ahead, sent = pending.pop(sid)
                            self._answer(sid, int(cls), "cloud", t0, "offload")
                            # From the send, not the arrival: the policy predicts the link's
                            # and host's part, which the backlog of offloads drives.
                            self.policy.observed(time.perf_counter() - sent, ahead)
                msg = self.link.poll(0.0)
        except LinkError as exc:
            self._lose_host(pending, f"link failed: {exc}")
            return
        self._check_stale(pending)

    def _check_stale(self, pending: dict) -> None:
        # Silence, not age: on a slow link a deep backlog's oldest request may wait longer than
        # the timeout while answers keep coming; a host that answers nothing for the timeout
        # while it owes answers is gone.
        silent = time.perf_counter() - self._last_heard
        if pending and self.host_lost is None and silent > self.answer_timeout_s:
            self._lose_host(pending, f"no answer from the host in {self.answer_timeout_s} s")

    def _lose_host(self, pending: dict, why: str) -> None:
        """Answer what the host owes from the exit; offload nothing more."""
        self.host_lost = why
        self.policy.events.append(
            {
                "t_s": round(time.monotonic() - self.policy.started, 4),
                "policy": "edge only (degraded)",
                "why": why,
            }
        )
        for sid, (t0, exit_class, *_) in sorted(pending.items()):
            self._answer(sid, exit_class, "degraded", t0, why)
        pending.clear()


def infer_report(
    answers: list[Answer], labels: np.ndarray | None, run: InferRun, wall_s: float
) -> dict[str, Any]:
    """Latency percentiles, where the answers came from, accuracy per path, bytes, policy."""
    lat = np.array([a.latency_s for a in answers]) * 1000
    paths = np.array([a.path for a in answers])
    pred = np.array([a.predicted for a in answers])
    report: dict[str, Any] = {
        "role": "edge",
        "mode": "infer",
        "samples": len(answers),
        "runtime_s": round(wall_s, 3),
        "latency_ms": {
            f"p{q}": round(float(np.percentile(lat, q)), 3) if len(lat) else None
            for q in (50, 95, 99)
        }
        | {"mean": round(float(lat.mean()), 3) if len(lat) else None},
        "fraction_at_edge": round(float((paths != "cloud").mean()), 4) if len(paths) else None,
        "answers": {p: int((paths == p).sum()) for p in ("edge", "cloud", "degraded")},
        "answers_by_reason": dict(Counter(a.reason for a in answers)),
        "degraded": bool((paths == "degraded").any()),
        "host_lost": run.host_lost,
        "policy": run.policy.describe(),
        "arrivals": run.arrivals.describe(),
        "slowdown": run.slowdown,
        "codec": run.codec,
    }
    if labels is not None:
        ok = pred == labels[: len(pred)]
        report["accuracy"] = round(float(ok.mean()), 4) if len(ok) else None
        report["accuracy_by_path"] = {
            p: round(float(ok[paths == p].mean()), 4) if (paths == p).any() else None
            for p in ("edge", "cloud", "degraded")
        }
    stats = run.link.stats if run.link is not None else {}
    report["bytes_up"] = stats.get("bytes_up", 0)
    report["bytes_down"] = stats.get("bytes_down", 0)
    report["predictions"] = pred.tolist()
    report["paths"] = paths.tolist()
    return report
