"""The host writes both sides' training curves as TensorBoard event files while it serves.

The board writes nothing: everything it measures reaches the host (each epoch's exit figures
ride on EPOCH_END), so torch's own SummaryWriter on the host draws both sides and the board
needs no TensorBoard package. One event directory per (edge, run), under ``RUN_DIR/tensorboard``.

Scalars (the tags `hostctl report` reads):
  epoch step:  exit/train_loss, exit/train_accuracy, exit/test_accuracy,
               final/train_loss, final/train_accuracy, final/test_accuracy
  batch step:  final/batch_loss (step: batches the tail has trained)
  time step:   link/rate_kBps (training activation bytes received per second, step:
               milliseconds since the edge's first batch), once a second and at epoch ends
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

EVENTS_DIR = "tensorboard"
RATE_EVERY_S = 1.0


class _Run:
    """The writer and the running sums of one (edge, run)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the host has torch

        self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=5)
        self.loss_sum: dict[int, float] = {}
        self.batches: dict[int, int] = {}
        self.t0 = time.monotonic()
        self.rate_mark = (self.t0, 0)
        self.bytes = 0


class CurveWriter:
    """An event sink (CloudServer's ``on_event``) that writes TensorBoard scalars."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / EVENTS_DIR
        self._runs: dict[tuple[str, str], _Run] = {}
        self._lock = threading.Lock()  # sessions of several edges call in from their threads

    def __call__(self, kind: str, state: Any, info: dict[str, Any]) -> None:
        """Record one event of the cloud server."""
        if kind not in ("batch", "epoch"):
            return
        with self._lock:
            run = self._run(state.edge_id, state.run_id)
            if kind == "batch":
                self._batch(run, len(state.trained_ids), info)
            else:
                self._epoch(run, info)

    def close(self) -> None:
        """Flush and close every writer."""
        with self._lock:
            for run in self._runs.values():
                run.writer.close()
            self._runs.clear()

    def _run(self, edge_id: str, run_id: str) -> _Run:
        key = (edge_id, run_id)
        if key not in self._runs:
            self._runs[key] = _Run(self.root / f"{edge_id}-{run_id}")
        return self._runs[key]

    def _batch(self, run: _Run, trained: int, info: dict[str, Any]) -> None:
        epoch = int(info["epoch"])
        run.loss_sum[epoch] = run.loss_sum.get(epoch, 0.0) + float(info["loss"])
        run.batches[epoch] = run.batches.get(epoch, 0) + 1
        run.writer.add_scalar("final/batch_loss", float(info["loss"]), trained)
        run.bytes += int(info.get("wire_bytes", 0))
        self._rate(run, force=False)

    def _rate(self, run: _Run, force: bool) -> None:
        """A link-rate point once a second, and at each epoch's end (a short run has some)."""
        now = time.monotonic()
        then, before = run.rate_mark
        if (now - then >= RATE_EVERY_S or force) and run.bytes > before and now > then:
            rate = (run.bytes - before) / (now - then) / 1e3
            run.writer.add_scalar("link/rate_kBps", rate, round(1000 * (now - run.t0)))
            run.rate_mark = (now, run.bytes)

    def _epoch(self, run: _Run, info: dict[str, Any]) -> None:
        self._rate(run, force=True)
        epoch = int(info["epoch"])
        n = run.batches.get(epoch, 0)
        figures = {
            "exit/train_loss": info.get("edge_train_exit_loss"),
            "exit/train_accuracy": info.get("edge_train_exit_accuracy"),
            "exit/test_accuracy": info.get("edge_exit_accuracy"),
            "final/train_loss": run.loss_sum[epoch] / n if n else None,
            "final/train_accuracy": info.get("train_final_accuracy"),
            "final/test_accuracy": info.get("final_accuracy"),
        }
        for tag, value in figures.items():
            if value is not None:
                run.writer.add_scalar(tag, float(value), epoch)
        run.writer.flush()
