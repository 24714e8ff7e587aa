"""The whole network (front + tail) trained in one place, with torch: the comparison modes.

`cloud` mode trains it on the host from the uploaded raw data; `edge` mode trains it on the
board with no link at all. Both start from the bundle's initial weights, like the split modes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_runtime.bundle import EDGE_WEIGHTS, TAIL_WEIGHTS, Bundle
from edge_runtime.data import Dataset, batches
from edge_runtime.engines.base import EngineError
from edge_runtime.train.pacing import Pacer, Stopwatch, pacing_clock
from edge_runtime.train.schedule import ScheduleError, length_note, schedule_of

# The edge's logger: `--mode edge` runs this on the board; `--mode cloud` on the host says it too.
log = logging.getLogger("hiertrain.edge")


class WholeNetTrainer:
    """Front + tail as one torch network; `side` says which half of the bundle holds the weights."""

    def __init__(
        self, bundle: Bundle, side: str, threads: int | None = None, slowdown: float = 1.0
    ) -> None:
        # Imported here: the edge runtime with the ort engine imports neither torch nor models.
        import torch

        from models import ManifestError, ModelSpecError, build_optimizer, rebuild, train_step

        if threads:
            torch.set_num_threads(threads)
        m = bundle.manifest
        if not m.get("baselines"):
            raise EngineError("training the whole network needs a bundle exported with --baselines")
        where = bundle.side_dir(side)
        try:
            self.net = rebuild.whole_net(m, where, where / EDGE_WEIGHTS, where / TAIL_WEIGHTS)
            config = m["edge"]["optimizer"]
            self.optimizer = build_optimizer(self.net.parameters(), config)
            # The bundle's schedule, as the hierarchical halves follow it (same epochs, same lr).
            self.schedule = schedule_of(config)
        except (ManifestError, ModelSpecError, ScheduleError) as exc:
            raise EngineError(str(exc)) from None
        self.base_lr = float(config["lr"])
        self._torch = torch
        self._train_step = train_step
        self.busy_s = 0.0
        # Board profile pacing, as in the edge's training loop (and on the same clock).
        self._pacer = Pacer(slowdown, pacing_clock(threads))
        self.train_done_at: float | None = None  # wall clock when the last epoch's training ended

    def train_epoch(
        self, ds: Dataset, epoch: int, batch_size: int, seed: int = 0, augment: bool = False
    ) -> float:
        """One epoch at the schedule's rate for it; returns the training accuracy."""
        self.set_epoch_lr(epoch)
        correct = seen = 0
        t = time.perf_counter()
        for _, x, y in batches(ds, "train", batch_size, epoch=epoch, seed=seed, augment=augment):
            watch = Stopwatch()
            correct += self._train_step(self.net, self.optimizer, x, y).correct(y)
            seen += len(y)
            self._pacer.pace(watch.elapsed())
        self.busy_s += time.perf_counter() - t
        self.train_done_at = time.time()
        return correct / max(seen, 1)

    def set_epoch_lr(self, epoch: int) -> float:
        """Set the bundle's scheduled learning rate for `epoch`; returns it."""
        lr = self.schedule.lr(self.base_lr, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def accuracy(self, ds: Dataset, batch_size: int = 256) -> float | None:
        """Test-set accuracy in inference mode."""
        torch = self._torch
        self.net.eval()
        correct = seen = 0
        t = time.perf_counter()
        with torch.no_grad():
            for _, x, y in batches(ds, "test", batch_size, epoch=0):
                watch = Stopwatch()
                correct += int((self.net(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
                seen += len(y)
                self._pacer.pace(watch.elapsed())
        self.busy_s += time.perf_counter() - t
        return correct / seen if seen else None

    def fit(
        self,
        ds: Dataset,
        epochs: int,
        batch_size: int,
        seed: int = 0,
        augment: bool = False,
        on_epoch: Callable[[int, float, float | None], None] | None = None,
    ) -> float | None:
        """Train `epochs` epochs, evaluating after each; returns the last test accuracy."""
        if note := length_note(self.schedule, epochs):
            log.warning("%s", note)
        acc = None
        for epoch in range(epochs):
            train_acc = self.train_epoch(ds, epoch, batch_size, seed, augment)
            acc = self.accuracy(ds)
            if on_epoch is not None:
                on_epoch(epoch, train_acc, acc)
        return acc
