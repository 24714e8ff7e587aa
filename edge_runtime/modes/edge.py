"""Edge-only training: the board trains the whole network alone (torch), with no link.

The comparison the paper draws for a device that never talks to a cloud. It starts from the
bundle's initial weights, like every other mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge_runtime.bundle import Bundle
from edge_runtime.data import Dataset
from edge_runtime.modes.spec import ModeSpec
from edge_runtime.report import RunReport

SPEC = ModeSpec(
    name="edge",
    summary="edge-only: the board trains the whole network alone, no link",
    needs_link=False,
    engine_variant=None,
    scores_exit=False,
    needs_baselines=True,
    trains_on_edge=True,
    edge_half="edge_runtime.modes.edge:EdgeAlone",
)

EpochCallback = Callable[[int, float, float | None], None]


class EdgeAlone:
    """Runs the whole network on the board: no link, no host, one report."""

    spec = SPEC

    def __init__(
        self, bundle: Bundle, *, threads: int | None = None, slowdown: float = 1.0
    ) -> None:
        from edge_runtime.train.whole import WholeNetTrainer

        self.bundle = bundle
        self.trainer = WholeNetTrainer(bundle, "edge", threads=threads, slowdown=slowdown)

    def run(
        self,
        data: Dataset,
        epochs: int,
        batch_size: int,
        seed: int = 0,
        augment: bool = False,
        on_epoch: EpochCallback | None = None,
    ) -> dict[str, Any]:
        """Train and evaluate `epochs` epochs; returns the run's report."""
        started_at, t0 = time.time(), time.perf_counter()
        acc = self.trainer.fit(data, epochs, batch_size, seed, augment, on_epoch=on_epoch)
        return RunReport(
            mode=SPEC.name,
            role="edge",
            model=self.bundle.model,
            split=self.bundle.split,
            epochs=epochs,
            runtime_s=round(time.perf_counter() - t0, 3),
            batches_sent=0,
            final_accuracy=acc,
            edge_busy_s=round(self.trainer.busy_s, 3),
            extra={
                "engine": "torch",
                "started_at": started_at,
                "train_done_at": self.trainer.train_done_at,
                "data": data.describe(),
                "stopped_early": False,
            },
        ).as_dict()
