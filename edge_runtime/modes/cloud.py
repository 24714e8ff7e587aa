"""Cloud-only training, edge half: the raw data set leaves the device once, as stored (uint8).

The host trains the whole network on it; the edge trains nothing and waits for the figures.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.modes.base import BatchOutcome, EdgeMode
from edge_runtime.modes.spec import ModeSpec
from edge_runtime.train.messages import RAW_TEST, RAW_TRAIN, RawBatch, UploadDone
from edge_runtime.train.sender import Sender

SPEC = ModeSpec(
    name="cloud",
    summary="cloud-only: the raw data set goes up once and the host trains everything",
    needs_link=True,
    engine_variant=None,
    scores_exit=False,
    needs_baselines=True,
    trains_on_edge=False,
    edge_half="edge_runtime.modes.cloud:CloudEdge",
)


class CloudEdge(EdgeMode):
    spec = SPEC
    final_wait_s = 3600.0  # the whole training happens on the host after the upload

    def before_epochs(self, sender: Sender) -> None:
        t, data, cfg = self.trainer, self.trainer.data, self.trainer.cfg
        for raw_set, x_all, y_all in (
            (RAW_TRAIN, data.x_train, data.y_train),
            (RAW_TEST, data.x_test, data.y_test),
        ):
            total = -(-len(x_all) // cfg.batch_size)
            for index in range(total):
                sl = slice(index * cfg.batch_size, (index + 1) * cfg.batch_size)
                t.blocked_s += sender.put(RawBatch(raw_set, index, y_all[sl], x_all[sl]))
                t.on_batch("upload", raw_set, index + 1, total, 0.0, 0.0)
        t.blocked_s += sender.put(
            UploadDone(
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                augment=cfg.augment,
                num_classes=data.num_classes,
            )
        )

    def train_batch(
        self, epoch: int, index: int, x: np.ndarray, y: np.ndarray, sender: Sender
    ) -> BatchOutcome:
        raise AssertionError("cloud mode trains nothing on the edge")  # trains_on_edge=False
