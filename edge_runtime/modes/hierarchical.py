"""Hierarchical training (ours), edge half: train front + exit on the exit's loss, send the cut.

The activation and the labels (never the input) go up; no gradient comes back, so the next
step starts while this batch is on the link. In a fleet whose host averages fronts (its WELCOME
says how often), the edge also runs the averaging rounds (`edge_runtime/train/averaging.py`) at
batch boundaries, and each activation names the front version that produced it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.data import num_batches
from edge_runtime.modes.base import BatchOutcome, EdgeMode
from edge_runtime.modes.spec import ModeSpec
from edge_runtime.train.averaging import AveragingSchedule, FrontRounds
from edge_runtime.train.messages import Batch
from edge_runtime.train.pacing import Stopwatch
from edge_runtime.train.sender import Sender

if TYPE_CHECKING:
    from edge_runtime.train.loop import EdgeTrainer

SPEC = ModeSpec(
    name="hierarchical",
    summary="hierarchical (ours): the edge trains front + exit, the host the tail, at once",
    needs_link=True,
    engine_variant="train",
    scores_exit=True,
    needs_baselines=False,
    trains_on_edge=True,
    edge_half="edge_runtime.modes.hierarchical:HierarchicalEdge",
    codec_is_free=True,
    takes_privacy_defences=True,
)


class HierarchicalEdge(EdgeMode):
    spec = SPEC

    def __init__(self, trainer: EdgeTrainer) -> None:
        super().__init__(trainer)
        schedule = AveragingSchedule.from_welcome(
            trainer.link.welcome_resume.get("front_averaging")
        )
        self.rounds: FrontRounds | None = None
        if schedule is not None and trainer.engine is not None:
            self.rounds = FrontRounds(
                trainer.engine,
                schedule,
                epochs=trainer.cfg.epochs,
                batches_per_epoch=num_batches(trainer.data, "train", trainer.cfg.batch_size),
                progress_extra=trainer.progress.extra,
                timeout=trainer.cfg.round_timeout,
            )

    @property
    def front_version(self) -> int:
        return self.rounds.version if self.rounds is not None else 0

    def train_batch(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> BatchOutcome:
        t = self.trainer
        rounds = self.rounds
        waited = rounds.blocked_s if rounds is not None else 0.0
        if rounds is not None:
            rounds.adopt_pending(sender)  # a batch boundary: no step mixes two fronts
        watch = Stopwatch()
        step = t.engine.train_step(x, y)
        step_s = t.pace(watch.elapsed())
        blocked = 0.0
        if t.host_has(epoch, index):
            t.skipped += 1
        else:
            blocked = sender.put(
                Batch(
                    epoch,
                    index,
                    y,
                    t.released(step.activation),
                    t.cfg.codec,
                    front_version=self.front_version,
                )
            )
        if rounds is not None:
            rounds.after_batch(epoch, index, len(y), sender)
            blocked += rounds.blocked_s - waited
        return BatchOutcome(
            step.loss, int((step.logits.argmax(axis=1) == y).sum()), step_s, blocked
        )

    def after_epoch(self, epoch: int, sender: Sender) -> None:
        if self.rounds is not None:
            waited = self.rounds.blocked_s
            self.rounds.after_epoch(epoch, sender)
            self.trainer.blocked_s += self.rounds.blocked_s - waited

    def report(self) -> dict[str, Any]:
        return {"front_averaging": self.rounds.report() if self.rounds is not None else None}
