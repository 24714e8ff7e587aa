"""The edge half of a link mode: what one training batch does, and what comes before the epochs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edge_runtime.modes.spec import ModeSpec

if TYPE_CHECKING:
    from edge_runtime.train.loop import EdgeTrainer
    from edge_runtime.train.sender import Sender


@dataclass
class BatchOutcome:
    """One training batch on the edge: the exit's loss and hits, and where the time went."""

    loss: float
    correct: int  # exit predictions that were right (0 where the mode scores no exit)
    step_s: float  # the edge's compute, paced to the board profile
    blocked_s: float  # waiting on the link (window full, or a gradient in split learning)


class EdgeMode(ABC):
    """Called by `EdgeTrainer`, which owns the link, the spool, checkpoints and the report."""

    spec: ClassVar[ModeSpec]
    # How long the edge waits for the host's last METRICS without any progress (None: the
    # run's default); cloud mode waits for the whole training on the host.
    final_wait_s: ClassVar[float | None] = None

    def __init__(self, trainer: EdgeTrainer) -> None:
        self.trainer = trainer

    def before_epochs(self, sender: Sender) -> None:  # noqa: B027 - most modes need nothing
        """Work before the first training epoch (cloud mode uploads the data set)."""

    def after_epoch(self, epoch: int, sender: Sender) -> None:  # noqa: B027 - most need nothing
        """Work after an epoch's training batches, before the model out and the evaluation (a
        front-averaging round on an epoch schedule)."""

    @property
    def front_version(self) -> int:
        """Which front version the edge trains now: what its activations say they came from
        (0: the bundle's; modes that average fronts count up)."""
        return 0

    def report(self) -> dict[str, Any]:
        """What the mode adds to the edge's report."""
        return {}

    @abstractmethod
    def train_batch(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> BatchOutcome:
        """Train on one batch and send what the mode sends."""
