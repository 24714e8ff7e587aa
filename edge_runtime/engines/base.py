"""The engine interface: what the training loop asks of whatever trains the front on the board."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import HiertrainError
from edge_runtime.train.schedule import ScheduleError, lr_for_epoch


class EngineError(HiertrainError):
    """An engine cannot be created or cannot run on this board."""


@dataclass
class StepResult:
    """One step's outputs: exit loss, exit logits and the cut's activation."""

    loss: float
    logits: np.ndarray
    activation: np.ndarray


class Engine(ABC):
    """Trains front + exit head with the exit's own loss; never takes a gradient from outside."""

    name: str = "engine"
    # The manifest's edge optimizer config ({"type", "lr", ..., "schedule"}): engines built
    # from a bundle set it, and begin_epoch follows its schedule. None: the lr is left alone.
    optimizer_config: Mapping[str, Any] | None = None

    @abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        """One optimizer step on a batch (float32 NCHW, int64 labels)."""

    @abstractmethod
    def eval_step(self, x: np.ndarray, y: np.ndarray | None = None) -> StepResult:
        """Forward in inference mode (BatchNorm running statistics); loss is NaN without y."""

    @abstractmethod
    def save_checkpoint(self, path: Path) -> None:
        """Write weights and optimizer state to `path` (written atomically)."""

    @abstractmethod
    def load_checkpoint(self, path: Path) -> None:
        """Restore what save_checkpoint wrote."""

    @abstractmethod
    def export_weights(self) -> dict[str, np.ndarray]:
        """Every parameter and BatchNorm buffer, by its torch state-dict name."""

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Take `weights` (every name `export_weights` gives, same shapes) as the front + exit's
        parameters and buffers, between two steps; the optimizer's state stays (front averaging
        replaces the weights, not how this edge's optimizer moves them)."""
        raise EngineError(f"the {self.name} engine cannot load weights")

    @abstractmethod
    def set_lr(self, lr: float) -> None:
        """Set the learning rate for the following steps."""

    def begin_epoch(self, epoch: int) -> float | None:
        """Set the bundle's scheduled learning rate for `epoch` (0-based); returns it.

        Called at every epoch start, a resumed one included: the rate is a function of the
        epoch alone, so a checkpoint needs no record of it."""
        if self.optimizer_config is None:
            return None
        try:
            lr = lr_for_epoch(self.optimizer_config, epoch)
        except ScheduleError as exc:
            raise EngineError(str(exc)) from None
        self.set_lr(lr)
        return lr

    def export_inference(self, path: Path) -> None:
        """Write front + exit as an inference ONNX model (input -> logits, activation)."""
        raise EngineError(f"the {self.name} engine cannot export an inference model")

    # Split learning (the baseline the paper improves on): the front's update comes from the
    # host's gradient of the activation. Engines that support it override both.
    def split_forward(self, x: np.ndarray) -> np.ndarray:
        """Train-mode forward of the front; remembers what split_backward needs."""
        raise EngineError(f"the {self.name} engine has no split-learning support")

    def split_backward(self, grad: np.ndarray) -> None:
        """Backpropagate the host's activation gradient through the front and step."""
        raise EngineError(f"the {self.name} engine has no split-learning support")
