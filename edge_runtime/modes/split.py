"""Split learning (the baseline), edge half: forward, send, wait for the host's gradient, backward.

The front's update comes from the host's gradient of the activation, so the edge waits for it
every batch: compute, uplink, cloud and downlink add up instead of overlapping.
"""

from __future__ import annotations

import time

import numpy as np

from edge_runtime.modes.base import BatchOutcome, EdgeMode
from edge_runtime.modes.spec import ModeSpec
from edge_runtime.train.messages import Batch
from edge_runtime.train.pacing import Stopwatch
from edge_runtime.train.sender import Sender

SPEC = ModeSpec(
    name="split",
    summary="split learning: the activation's gradient comes back and the edge waits for it",
    needs_link=True,
    engine_variant="split",
    # Its front has no exit head (ort) or one it never trains (torch): nothing to score.
    scores_exit=False,
    needs_baselines=True,
    trains_on_edge=True,
    edge_half="edge_runtime.modes.split:SplitEdge",
    waits_for_gradient=True,
)


class SplitEdge(EdgeMode):
    spec = SPEC

    def train_batch(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> BatchOutcome:
        t = self.trainer
        watch = Stopwatch()
        activation = t.engine.split_forward(x)
        forward = watch.elapsed()
        start = time.perf_counter()
        sender.put(Batch(epoch, index, y, activation, t.cfg.codec))
        grad = sender.await_grad(epoch, index, t.cfg.grad_timeout)
        blocked = time.perf_counter() - start
        watch = Stopwatch()
        t.engine.split_backward(grad.tensor)
        step_s = t.pace(forward + watch.elapsed())
        return BatchOutcome(float("nan"), 0, step_s, blocked)
