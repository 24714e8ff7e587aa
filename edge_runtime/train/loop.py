"""The edge's training loop: epochs, evaluation, checkpoints and the report, for any link mode.

What one batch does is the mode's (`edge_runtime/modes`): in hierarchical mode the engine trains
front + exit on the exit's own loss and the activation and the labels (never the input) go to
the host. At each epoch end the test set's activations go up as EVAL_BATCH, then EPOCH_END with
the exit's figures.

RunProgress lives in `work_dir`: the engine checkpoint and `progress.json` are written at each epoch
end and on a clean stop; `--resume` continues from them. Batch ids are (epoch, index) with a
deterministic order per epoch, so a restarted edge re-creates exactly the batches it had.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import sha256_file
from edge_runtime.data import Dataset, batches, num_batches
from edge_runtime.engines import Engine, EngineError
from edge_runtime.link import EdgeLink
from edge_runtime.model_messages import model_meta, weight_messages
from edge_runtime.modes import mode_spec
from edge_runtime.modes.base import EdgeMode
from edge_runtime.privacy import ActivationNoise, noise_rng
from edge_runtime.report import MetricsCsv, RunReport
from edge_runtime.statefile import StateError, previous, read_state, write_state
from edge_runtime.train.messages import EpochEnd, EvalBatch
from edge_runtime.train.pacing import Elapsed, Pacer, Stopwatch
from edge_runtime.train.schedule import ScheduleError, length_note, rate_report, schedule_of
from edge_runtime.train.sender import Sender, StalledAtStop

log = logging.getLogger("hiertrain.edge")

PROGRESS = "progress.json"
CHECKPOINT = "engine.ckpt"
FRESH_OR_PREVIOUS = (
    "start over with --fresh, or restore the previous checkpoint "
    "(progress.json.prev and engine.ckpt.prev) and --resume"
)


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
    # Front averaging: how long the edge waits for the fleet's average at a round boundary.
    round_timeout: float = 600.0
    # Board profile: pace each step to `slowdown` times this machine's compute time, so that a
    # virtual board computes like the slower board it stands for (0 or 1: as fast as it can).
    slowdown: float = 1.0
    # The compute time it multiplies: "cpu" (the step's thread CPU time: a single-threaded
    # engine, unaffected by load here) or "wall" (edge_runtime/train/pacing.py).
    pacing_clock: str = "wall"
    # Privacy defence: clip + noise on each activation before the codec (hierarchical mode).
    activation_noise: ActivationNoise | None = None


PARTS_SO_FAR = "parts_so_far"  # RunProgress.extra: the totals of a run's stopped parts


@dataclass
class RunProgress:
    """Where the run stands: the next (epoch, train batch index) to train, and the sha256 of the
    engine checkpoint that holds the front at that point (None: the bundle's initial front)."""

    run_id: str
    epoch: int = 0
    next_index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    engine_sha256: str | None = None

    @property
    def started(self) -> bool:
        """Whether the run got past its first batch at its last checkpoint."""
        return (self.epoch, self.next_index) != (0, 0)

    @classmethod
    def load(cls, work_dir: Path) -> RunProgress | None:
        """The saved progress, None if there is none; StateError if it is damaged."""
        path = work_dir / PROGRESS
        if not path.exists():
            return None
        payload = read_state(path, kind="edge-progress", version=1, way_out=FRESH_OR_PREVIOUS)
        try:
            data = json.loads(payload)
            progress = cls(
                str(data["run_id"]),
                int(data["epoch"]),
                int(data["next_index"]),
                dict(data.get("extra", {})),
                data.get("engine_sha256"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                path, f"edge-progress is malformed ({exc!r})", FRESH_OR_PREVIOUS
            ) from None
        return progress

    def save(self, work_dir: Path) -> None:
        """Write atomically (the previous progress is kept as progress.json.prev)."""
        payload = json.dumps(self.__dict__, indent=2).encode()
        write_state(work_dir / PROGRESS, payload, kind="edge-progress", version=1)

    def check_engine_checkpoint(self, work_dir: Path) -> Path | None:
        """The engine checkpoint to resume from (None: start from the bundle's initial front),
        after checking that it is the one this progress recorded."""
        path = work_dir / CHECKPOINT
        if self.engine_sha256 is None:
            if self.started:
                raise StateError(
                    work_dir / PROGRESS,
                    "records progress but no engine checkpoint",
                    FRESH_OR_PREVIOUS,
                )
            return None
        if not path.is_file():
            raise StateError(path, "engine checkpoint is missing", FRESH_OR_PREVIOUS)
        if sha256_file(path) != self.engine_sha256:
            raise StateError(
                path,
                "engine checkpoint is damaged (sha256 differs from the record)",
                FRESH_OR_PREVIOUS,
            )
        return path


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
        self._pacer = Pacer(config.slowdown, config.pacing_clock)
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
        self.train_exit_loss: float | None = None  # mean over the epoch's batches, for curves
        self.stopped_early = False
        self.link_down_at_stop = False  # stopped while the link moved nothing (see Sender)
        self.started_at: float | None = None  # wall clock: run start, end of the last training
        self.train_done_at: float | None = None
        resume = link.welcome_resume.get("trained")
        self._host_trained = tuple(resume) if resume else None
        self.mode: EdgeMode = mode_spec(config.mode).edge_class()(self)
        self.model_parts_sent = 0
        self.model_bytes_sent = 0  # the weights' bytes (payload), counted in bytes_up
        # Beside the engine checkpoint, so that `hostctl model` can assemble a usable model from
        # checkpoints alone (how inputs are normalised is the data's, not the weights').
        self.progress.extra["model_meta"] = model_meta(data, 0)
        self._noise_rng = noise_rng()
        self.lr: float | None = None  # the rate the engine trains the current epoch at
        if engine is not None and engine.optimizer_config is not None:
            try:  # a bundle whose schedule cannot work fails here, not at the first epoch
                note = length_note(schedule_of(engine.optimizer_config), config.epochs)
            except ScheduleError as exc:
                raise EngineError(str(exc)) from None
            if note and self.mode.spec.trains_on_edge:
                log.warning("%s", note)

    def run(self) -> dict[str, Any]:
        """Train the configured epochs (or until `stop` is set); returns the edge's report."""
        sender = Sender(self.link, self.cfg.queue_depth, stop=self.stop)
        self.started_at, t0 = time.time(), time.perf_counter()
        try:
            self.mode.before_epochs(sender)
            if not self.mode.spec.trains_on_edge:
                self.progress.epoch = self.cfg.epochs
            for epoch in range(self.progress.epoch, self.cfg.epochs):
                if not self._train_epoch(epoch, sender):
                    self.stopped_early = True
                    break
                self.mode.after_epoch(epoch, sender)
                self.train_done_at = time.time()
                if epoch == self.cfg.epochs - 1:
                    self._send_model(epoch, sender)
                self._evaluate(epoch, sender)
                self.progress.epoch, self.progress.next_index = epoch + 1, 0
                self._checkpoint()
            sender.drain()
        except StalledAtStop as why:
            # Stopped while the host was out of reach: no checkpoint past what the link took.
            log.warning("stopping with the link down (%s): the last checkpoint stands", why)
            self.stopped_early = self.link_down_at_stop = True
        finally:
            self.csv.close()
        final = (
            {} if self.stopped_early else self._await_final_metrics(sender, self.mode.final_wait_s)
        )
        return self._report(sender, time.perf_counter() - t0, final)

    def host_has(self, epoch: int, index: int) -> bool:
        """Whether the host had trained batch (epoch, index) when this session began."""
        return self._host_trained is not None and (epoch, index) <= self._host_trained

    def released(self, activation: np.ndarray) -> np.ndarray:
        """What crosses the link for an activation: after the privacy defence, if any."""
        noise = self.cfg.activation_noise
        return activation if noise is None else noise.apply(activation, self._noise_rng)

    def pace(self, step: Elapsed) -> float:
        """Stretch a step to the board profile's speed; returns the paced duration."""
        return self._pacer.pace(step)

    def _train_epoch(self, epoch: int, sender: Sender) -> bool:
        total = num_batches(self.data, "train", self.cfg.batch_size)
        if self.engine is not None:
            # The bundle's schedule, set at each epoch start, a resumed one too (the host's tail
            # sets its own from each batch's epoch).
            self.lr = self.engine.begin_epoch(epoch)
        correct = seen = 0
        loss_sum, trained = 0.0, 0
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
                # Every batch trained so far goes to the spool before the checkpoint says it
                # was trained: one written ahead of the spool would lose what is queued.
                sender.drain()
                self.progress.epoch, self.progress.next_index = epoch, index
                self._checkpoint()
                return False
            out = self.mode.train_batch(epoch, index, x, y, sender)
            self.edge_busy_s += out.step_s
            self.blocked_s += out.blocked_s
            loss, hit, step_s, blocked = out.loss, out.correct, out.step_s, out.blocked_s
            correct, seen = correct + hit, seen + len(y)
            loss_sum, trained = loss_sum + loss, trained + 1
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
            self.train_exit_loss = loss_sum / trained
        return True

    @property
    def _scores_exit(self) -> bool:
        return self.mode.spec.scores_exit

    def _evaluate(self, epoch: int, sender: Sender) -> None:
        total = num_batches(self.data, "test", self.cfg.eval_batch_size)
        confidences, corrects = [], []
        for index, x, y in batches(self.data, "test", self.cfg.eval_batch_size, epoch=epoch):
            watch = Stopwatch()
            step = self.engine.eval_step(x, y)
            self.edge_busy_s += self.pace(watch.elapsed())
            if self._scores_exit:
                confidences.append(softmax_confidence(step.logits))
                corrects.append(step.logits.argmax(axis=1) == y)
            self.blocked_s += sender.put(
                EvalBatch(
                    epoch,
                    index,
                    y,
                    self.released(step.activation),
                    self.cfg.codec,
                    front_version=self.mode.front_version,
                )
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
                    "train_exit_loss": self.train_exit_loss,
                    "exit_confidence": [round(float(c), 4) for c in conf],
                    "exit_correct": ok.astype(int).tolist(),
                    "eval_batch_size": self.cfg.eval_batch_size,
                    # The run's end rides on a sequenced message: BYE is best effort.
                    "last": epoch == self.cfg.epochs - 1,
                },
            )
        )

    def _send_model(self, epoch: int, sender: Sender) -> None:
        """The trained front + exit weights to the host, ahead of the last EPOCH_END, so that the
        host holds the whole model when the run ends (modes whose edge trains no exit head send
        nothing: there is no edge model to serve). Only to a host that asked for it in its
        WELCOME (one writing a model out; a host before that field always wants it): on a slow
        uplink the front is minutes of upload the host would throw away."""
        if self.engine is None or not self._scores_exit:
            return
        if not self.link.welcome_resume.get("model", True):
            return
        for msg in weight_messages(self.engine.export_weights(), model_meta(self.data, epoch)):
            self.blocked_s += sender.put(msg)
            self.model_parts_sent += 1
            self.model_bytes_sent += sum(v.nbytes for v in msg.tensors.values())

    def _checkpoint(self) -> None:
        """Engine checkpoint, then the progress that names it: a kill between the two leaves
        the previous pair (the previous engine checkpoint is kept as engine.ckpt.prev)."""
        if self.engine is not None:
            path = self.cfg.work_dir / CHECKPOINT
            if path.exists():
                os.replace(path, previous(path))
            self.engine.save_checkpoint(path)
            self.progress.engine_sha256 = sha256_file(path)
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
        while time.monotonic() - since < patience and not self.stop.is_set():
            for m in sender.metrics:
                if m.get("epoch") == last_epoch:
                    return m
            sender.poll_host(0.2)
            if (self.link.received, self.link.pending) != progress:
                progress, since = (self.link.received, self.link.pending), time.monotonic()
        return {}

    def _report(self, sender: Sender, runtime_s: float, final: dict[str, Any]) -> dict[str, Any]:
        stats = self.link.stats
        this_part = {
            "runtime_s": round(runtime_s, 3),
            "bytes_up": stats.get("bytes_up", 0),
            "bytes_down": stats.get("bytes_down", 0),
            "batches_sent": sender.batches_sent,
            "edge_busy_s": round(self.edge_busy_s, 3),
        }
        # A run resumed after a stop reports the whole run: what earlier parts did is kept in
        # the progress file when each part stops.
        before = self.progress.extra.get(PARTS_SO_FAR, {})
        whole = {k: round(v + before.get(k, 0), 3) for k, v in this_part.items()}
        parts = int(before.get("parts", 0)) + 1
        if self.stopped_early:
            self.progress.extra[PARTS_SO_FAR] = {**whole, "parts": parts}
            self.progress.save(self.cfg.work_dir)
        return RunReport(
            mode=self.cfg.mode,
            role="edge",
            epochs=self.cfg.epochs,
            runtime_s=whole["runtime_s"],
            bytes_up=int(whole["bytes_up"]),
            bytes_down=int(whole["bytes_down"]),
            batches_sent=int(whole["batches_sent"]),
            edge_exit_accuracy=self.exit_accuracy,
            final_accuracy=final.get("final_accuracy"),
            edge_busy_s=whole["edge_busy_s"],
            extra={
                "parts": parts,
                "this_part": this_part,
                "engine": self.engine.name if self.engine else None,
                "codec": self.cfg.codec,
                # The front + exit's rate: the bundle's, and the last epoch's under its schedule.
                **rate_report(self.engine.optimizer_config if self.engine else None),
                "lr_last_epoch": self.lr,
                "privacy": noise.describe() if (noise := self.cfg.activation_noise) else None,
                "slowdown": self.cfg.slowdown,
                "pacing_clock": self.cfg.pacing_clock,
                "epochs_done": self.progress.epoch,
                "stopped_early": self.stopped_early,
                "link_down_at_stop": self.link_down_at_stop,
                "started_at": self.started_at,
                "train_done_at": self.train_done_at,
                "link_stats": stats,
                "eval_batches_sent": sender.eval_batches_sent,
                "model_parts_sent": self.model_parts_sent,
                "model_bytes_up": self.model_bytes_sent,
                "batches_skipped_host_had": self.skipped,
                "edge_train_exit_accuracy": self.train_exit_accuracy,
                "cloud_busy_s_reported": final.get("cloud_busy_s"),
                "early_exit": final.get("early_exit"),
                "edge_send_s": round(sender.send_s, 3),
                "edge_blocked_s": round(self.blocked_s, 3),
                "host_metrics": sender.metrics,
                **self.mode.report(),
            },
        ).as_dict()
