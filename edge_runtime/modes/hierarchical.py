"""Hierarchical training (ours), edge half: train front + exit on the exit's loss, send the cut.

The activation and the labels (never the input) go up; no gradient comes back, so the next
step starts while this batch is on the link.
"""

from __future__ import annotations

import time

import numpy as np

from edge_runtime.modes.base import BatchOutcome, EdgeMode
from edge_runtime.modes.spec import ModeSpec
from edge_runtime.train.messages import Batch
from edge_runtime.train.sender import Sender

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

    def train_batch(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> BatchOutcome:
        t = self.trainer
        start = time.perf_counter()
        step = t.engine.train_step(x, y)
        step_s = t.pace(time.perf_counter() - start)
        blocked = 0.0
        if t.host_has(epoch, index):
            t.skipped += 1
        else:
            blocked = sender.put(Batch(epoch, index, y, t.released(step.activation), t.cfg.codec))
        return BatchOutcome(
            step.loss, int((step.logits.argmax(axis=1) == y).sum()), step_s, blocked
        )
