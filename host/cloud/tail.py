"""The tail: blocks split+1.. and the final classifier, trained by the host on activations."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import TAIL_WEIGHTS, Bundle
from edge_runtime.train.schedule import LrSchedule, schedule_of
from models import build_optimizer, rebuild, train_step


class TailTrainer:
    """Trains the tail with its own loss and optimizer; never sends a gradient anywhere."""

    def __init__(self, bundle: Bundle) -> None:
        """`bundle` is the whole bundle or its cloud half; the tail is built from its cloud/."""
        m = bundle.manifest
        cloud = bundle.side_dir("cloud")
        self.tail: nn.Module = rebuild.tail(m, cloud, cloud / TAIL_WEIGHTS)
        config = m["cloud"]["optimizer"]
        self.optimizer = build_optimizer(self.tail.parameters(), config)
        self.base_lr = float(config["lr"])
        self.schedule: LrSchedule = schedule_of(config)

    def begin_epoch(self, epoch: int) -> float:
        """Set the bundle's scheduled learning rate for a batch of `epoch` (from its id); returns
        it. Per batch, not per epoch start: the host sees no epoch start, and a resumed or
        fleet tail takes whatever epoch comes next (the rate is a function of it alone)."""
        lr = self.schedule.lr(self.base_lr, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, activation: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One optimizer step; returns (loss, correct predictions)."""
        step = train_step(self.tail, self.optimizer, activation, labels)
        return step.loss, step.correct(labels)

    def train_step_split(
        self, activation: np.ndarray, labels: np.ndarray
    ) -> tuple[float, int, np.ndarray]:
        """Split learning: one step, and the loss's gradient w.r.t. the activation for the edge."""
        step = train_step(self.tail, self.optimizer, activation, labels, input_grad=True)
        assert step.input_grad is not None  # asked for above
        return step.loss, step.correct(labels), step.input_grad.numpy()

    @torch.no_grad()
    def predict(self, activation: np.ndarray) -> np.ndarray:
        """Class predictions in inference mode."""
        self.tail.eval()
        logits = self.tail(torch.from_numpy(np.ascontiguousarray(activation, np.float32)))
        return logits.argmax(1).numpy()

    def state_dict(self) -> dict:
        """Tail weights and optimizer state, for a checkpoint."""
        return {"tail": self.tail.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict gave."""
        self.tail.load_state_dict(state["tail"])
        self.optimizer.load_state_dict(state["optimizer"])
