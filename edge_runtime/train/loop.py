"""The edge's training loop in hierarchical mode.

Per batch: the engine trains front + exit on the exit's own loss and yields the cut's activation;
the activation and the labels (never the input) go to the host; no gradient comes back. At each
epoch end the test set's activations go up as EVAL_BATCH, then EPOCH_END with the exit's figures.

RunProgress lives in `work_dir`: the engine checkpoint and `progress.json` are written at each epoch
end and on a clean stop; `--resume` continues from them. Batch ids are (epoch, index) with a
deterministic order per epoch, so a restarted edge re-creates exactly the batches it had.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.data import Dataset, batches, num_batches
from edge_runtime.engines import Engine
from edge_runtime.link import EdgeLink
from edge_runtime.link.messages import Batch, EpochEnd, EvalBatch, RawBatch
from edge_runtime.privacy import ActivationNoise, noise_rng
from edge_runtime.report import MetricsCsv
from edge_runtime.train.pacing import pace
from edge_runtime.train.sender import Sender

PROGRESS = "progress.json"
CHECKPOINT = "engine.ckpt"
# hierarchical: ours. split: split learning (GRAD comes back, the edge waits for it).
# cloud: the raw training set goes up once (RAW_BATCH; set 0 train, 1 test), the host trains all.
LINK_MODES = ("hierarchical", "split", "cloud")
RAW_TRAIN, RAW_TEST = 0, 1


@dataclass
class EdgeRunConfig:
    """What one edge run trains, and where it keeps its state."""

    epochs: int
    batch_size: int = 32
    eval_batch_size: int = 128
    codec: str = "fp32"
    augment: bool = False
    seed: int = 0
    queue_depth: int = 2
    work_dir: Path = Path("runs/edge")
    # How long the edge waits for the host without any progress at the end of a run.
    final_metrics_timeout: float = 120.0
    mode: str = "hierarchical"
    grad_timeout: float = 300.0
    # Board profile: pace each step to `slowdown` times this machine's compute time, so that a
    # virtual board computes like the slower board it stands for (0 or 1: as fast as it can).
    slowdown: float = 1.0
    # Privacy defence: clip + noise on each activation before the codec (hierarchical mode).
    activation_noise: ActivationNoise | None = None


@dataclass
class RunProgress:
    """Where the run stands: the next (epoch, train batch index) to train."""

    run_id: str
    epoch: int = 0
    next_index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, work_dir: Path) -> RunProgress | None:
        path = work_dir / PROGRESS
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(data["run_id"], data["epoch"], data["next_index"], data.get("extra", {}))

    def save(self, work_dir: Path) -> None:
        tmp = work_dir / (PROGRESS + ".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        os.replace(tmp, work_dir / PROGRESS)


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """Max softmax probability per row (the exit's confidence)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e.max(axis=1) / e.sum(axis=1)


BatchCallback = Callable[[str, int, int, int, float, float], None]


class EdgeTrainer:
    """Runs epochs of hierarchical training on the edge over one link."""

    def __init__(
        self,
        engine: Engine | None,
        data: Dataset,
        link: EdgeLink,
        config: EdgeRunConfig,
        progress: RunProgress,
        *,
        stop: threading.Event | None = None,
        on_batch: BatchCallback | None = None,
    ) -> None:
        self.engine = engine
        self.data = data
        self.link = link
        self.cfg = config
        self.progress = progress
        self.stop = stop or threading.Event()
        self.on_batch = on_batch or (lambda *_: None)
        self.csv = MetricsCsv(
            config.work_dir / "edge_metrics.csv",
            ["time", "phase", "epoch", "index", "loss", "exit_correct", "n", "step_s", "blocked_s"],
        )
        self.edge_busy_s = 0.0
        self.blocked_s = 0.0
        self.skipped = 0
        self.exit_accuracy: float | None = None
        self.train_exit_accuracy: float | None = None
        self.stopped_early = False
        self.started_at: float | None = None  # wall clock: run start, end of the last training
        self.train_done_at: float | None = None
        resume = link.welcome_resume.get("trained")
        self._host_trained = tuple(resume) if resume else None
        self._noise_rng = noise_rng()

    def run(self) -> dict[str, Any]:
        """Train the configured epochs (or until `stop` is set); returns the edge's report."""
        sender = Sender(self.link, self.cfg.queue_depth)
        self.started_at, t0 = time.time(), time.perf_counter()
        try:
            if self.cfg.mode == "cloud":
                self._upload_raw(sender)
                self.progress.epoch = self.cfg.epochs
            for epoch in range(self.progress.epoch, self.cfg.epochs):
                if not self._train_epoch(epoch, sender):
                    self.stopped_early = True
                    break
                self.train_done_at = time.time()
                self._evaluate(epoch, sender)
                self.progress.epoch, self.progress.next_index = epoch + 1, 0
                self._checkpoint()
            sender.drain()
        finally:
            self.csv.close()
        final = (
            {}
            if self.stopped_early
            else self._await_final_metrics(sender, None if self.cfg.mode != "cloud" else 3600.0)
        )
        return self._report(sender, time.perf_counter() - t0, final)

    def _already_trained_by_host(self, epoch: int, index: int) -> bool:
        return self._host_trained is not None and (epoch, index) <= self._host_trained

    def _train_epoch(self, epoch: int, sender: Sender) -> bool:
        total = num_batches(self.data, "train", self.cfg.batch_size)
        correct = seen = 0
        start = self.progress.next_index
        for index, x, y in batches(
            self.data,
            "train",
            self.cfg.batch_size,
            epoch=epoch,
            seed=self.cfg.seed,
            augment=self.cfg.augment,
            start=start,
        ):
            if self.stop.is_set():
                self.progress.epoch, self.progress.next_index = epoch, index
                self._checkpoint()
                return False
            if self.cfg.mode == "split":
                loss, hit, step_s, blocked = self._split_step(epoch, index, x, y, sender)
            else:
                loss, hit, step_s, blocked = self._hierarchical_step(epoch, index, x, y, sender)
            correct, seen = correct + hit, seen + len(y)
            self.csv.row(
                time=round(time.time(), 3),
                phase="train",
                epoch=epoch,
                index=index,
                loss=round(loss, 5),
                exit_correct=hit,
                n=len(y),
                step_s=round(step_s, 5),
                blocked_s=round(blocked, 5),
            )
            self.on_batch("train", epoch, index + 1, total, loss, hit / len(y))
        if seen and self._scores_exit:
            self.train_exit_accuracy = correct / seen
        return True

    def _hierarchical_step(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> tuple[float, int, float, float]:
        """Train front + exit, queue the activation; the next step starts while it is sent."""
        t = time.perf_counter()
        step = self.engine.train_step(x, y)
        step_s = self._pace(time.perf_counter() - t)
        self.edge_busy_s += step_s
        blocked = 0.0
        if self._already_trained_by_host(epoch, index):
            self.skipped += 1
        else:
            released = self._released(step.activation)
            blocked = sender.put(Batch(epoch, index, y, released, self.cfg.codec))
            self.blocked_s += blocked
        return step.loss, int((step.logits.argmax(axis=1) == y).sum()), step_s, blocked

    def _split_step(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> tuple[float, int, float, float]:
        """Split learning: forward, send, wait for the host's gradient, backward."""
        t = time.perf_counter()
        activation = self.engine.split_forward(x)
        step_s = time.perf_counter() - t
        t = time.perf_counter()
        sender.put(Batch(epoch, index, y, activation, self.cfg.codec))
        grad = sender.await_grad(epoch, index, self.cfg.grad_timeout)
        blocked = time.perf_counter() - t
        t = time.perf_counter()
        self.engine.split_backward(grad.tensor)
        step_s = self._pace(step_s + time.perf_counter() - t)
        self.edge_busy_s += step_s
        self.blocked_s += blocked
        return float("nan"), 0, step_s, blocked

    def _released(self, activation: np.ndarray) -> np.ndarray:
        """What crosses the link for an activation: after the privacy defence, if any."""
        noise = self.cfg.activation_noise
        return activation if noise is None else noise.apply(activation, self._noise_rng)

    def _pace(self, seconds: float) -> float:
        """Stretch a step to the board profile's speed; returns the paced duration."""
        return pace(seconds, self.cfg.slowdown)

    @property
    def _scores_exit(self) -> bool:
        """Only hierarchical training trains its exit head; split learning's front has none
        (ORT) or one it never trains (torch), so its exit is not scored."""
        return self.cfg.mode == "hierarchical"

    def _upload_raw(self, sender: Sender) -> None:
        """Cloud-only training: the raw data set leaves the device once, as stored (uint8)."""
        for raw_set, x_all, y_all in (
            (RAW_TRAIN, self.data.x_train, self.data.y_train),
            (RAW_TEST, self.data.x_test, self.data.y_test),
        ):
            total = -(-len(x_all) // self.cfg.batch_size)
            for index in range(total):
                sl = slice(index * self.cfg.batch_size, (index + 1) * self.cfg.batch_size)
                self.blocked_s += sender.put(RawBatch(raw_set, index, y_all[sl], x_all[sl]))
                self.on_batch("upload", raw_set, index + 1, total, 0.0, 0.0)
        self.blocked_s += sender.put(
            EpochEnd(
                0,
                {
                    "upload_done": True,
                    "epochs": self.cfg.epochs,
                    "batch_size": self.cfg.batch_size,
                    "seed": self.cfg.seed,
                    "augment": self.cfg.augment,
                    "num_classes": self.data.num_classes,
                },
            )
        )

    def _evaluate(self, epoch: int, sender: Sender) -> None:
        total = num_batches(self.data, "test", self.cfg.eval_batch_size)
        confidences, corrects = [], []
        for index, x, y in batches(self.data, "test", self.cfg.eval_batch_size, epoch=epoch):
            t = time.perf_counter()
            step = self.engine.eval_step(x, y)
            self.edge_busy_s += self._pace(time.perf_counter() - t)
            if self._scores_exit:
                confidences.append(softmax_confidence(step.logits))
                corrects.append(step.logits.argmax(axis=1) == y)
            self.blocked_s += sender.put(
                EvalBatch(epoch, index, y, self._released(step.activation), self.cfg.codec)
            )
            acc = float(corrects[-1].mean()) if corrects else 0.0
            self.on_batch("eval", epoch, index + 1, total, step.loss, acc)
        conf = np.concatenate(confidences) if confidences else np.zeros(0)
        ok = np.concatenate(corrects) if corrects else np.zeros(0, bool)
        self.exit_accuracy = float(ok.mean()) if len(ok) else None
        # Per-sample exit confidence and correctness (no input data) let the host work out the
        # early-exit trade-off against its own final predictions on the same test samples.
        self.blocked_s += sender.put(
            EpochEnd(
                epoch,
                {
                    "exit_accuracy": self.exit_accuracy,
                    "train_exit_accuracy": self.train_exit_accuracy,
                    "exit_confidence": [round(float(c), 4) for c in conf],
                    "exit_correct": ok.astype(int).tolist(),
                    "eval_batch_size": self.cfg.eval_batch_size,
                    # The run's end rides on a sequenced message: BYE is best effort.
                    "last": epoch == self.cfg.epochs - 1,
                },
            )
        )

    def _checkpoint(self) -> None:
        self.engine.save_checkpoint(self.cfg.work_dir / CHECKPOINT)
        self.progress.save(self.cfg.work_dir)

    def _await_final_metrics(self, sender: Sender, timeout: float | None = None) -> dict[str, Any]:
        """After the last EPOCH_END, the host's METRICS for it (final accuracy, early exit).

        On a slow link the edge finishes long before its spool drains: wait as long as messages
        keep arriving at the host (its received cursor moves), and give up only after `timeout`
        seconds without progress. (Consumption moves only at the host's checkpoints.)
        """
        patience = timeout or self.cfg.final_metrics_timeout
        last_epoch = self.cfg.epochs - 1
        progress, since = (self.link.received, self.link.pending), time.monotonic()
        while time.monotonic() - since < patience:
            for m in sender.metrics:
                if m.get("epoch") == last_epoch:
                    return m
            sender.poll_host(0.2)
            if (self.link.received, self.link.pending) != progress:
                progress, since = (self.link.received, self.link.pending), time.monotonic()
        return {}

    def _report(self, sender: Sender, runtime_s: float, final: dict[str, Any]) -> dict[str, Any]:
        stats = self.link.stats
        return {
            "mode": self.cfg.mode,
            "role": "edge",
            "engine": self.engine.name if self.engine else None,
            "codec": self.cfg.codec,
            "privacy": self.cfg.activation_noise.describe() if self.cfg.activation_noise else None,
            "slowdown": self.cfg.slowdown,
            "epochs": self.cfg.epochs,
            "epochs_done": self.progress.epoch,
            "stopped_early": self.stopped_early,
            "runtime_s": round(runtime_s, 3),
            "started_at": self.started_at,
            "train_done_at": self.train_done_at,
            "bytes_up": stats.get("bytes_up", 0),
            "bytes_down": stats.get("bytes_down", 0),
            "link_stats": stats,
            "batches_sent": sender.batches_sent,
            "eval_batches_sent": sender.eval_batches_sent,
            "batches_skipped_host_had": self.skipped,
            "edge_exit_accuracy": self.exit_accuracy,
            "edge_train_exit_accuracy": self.train_exit_accuracy,
            "final_accuracy": final.get("final_accuracy"),
            "cloud_busy_s_reported": final.get("cloud_busy_s"),
            "early_exit": final.get("early_exit"),
            "edge_busy_s": round(self.edge_busy_s, 3),
            "edge_send_s": round(sender.send_s, 3),
            "edge_blocked_s": round(self.blocked_s, 3),
            "host_metrics": sender.metrics,
        }
