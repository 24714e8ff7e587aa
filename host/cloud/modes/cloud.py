"""Cloud-only training, host half: collect the uploaded raw data, then train the whole network."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.data import Dataset
from edge_runtime.link import HostSession, LinkError
from edge_runtime.modes import cloud
from edge_runtime.train.messages import RAW_TEST, RAW_TRAIN, Metrics, RawBatch, UploadDone
from edge_runtime.train.whole import WholeNetTrainer
from host.cloud.edge_state import EdgeState
from host.cloud.modes.base import HostMode


class CloudHost(HostMode):
    spec = cloud.SPEC
    handles = (RawBatch, UploadDone)
    trains_tail = False  # it trains each edge's whole network on its raw data

    def handle(self, session: HostSession, state: EdgeState, msg: Any) -> bool:
        if isinstance(msg, RawBatch):
            state.raw.setdefault(msg.raw_set, {})[msg.index] = (msg.labels, msg.data)
            state.last_seq = msg.seq
            return True
        if isinstance(msg, UploadDone):
            state.last_seq = msg.seq
            self._train_whole(session, state, msg)
            return True
        return False

    def _train_whole(self, session: HostSession, state: EdgeState, plan: UploadDone) -> None:
        """Train the whole network on the uploaded raw data, here."""

        def stack(raw_set: int) -> tuple[np.ndarray, np.ndarray]:
            parts = [state.raw.get(raw_set, {})[i] for i in sorted(state.raw.get(raw_set, {}))]
            if not parts:
                raise LinkError(f"cloud mode: no raw data of set {raw_set} was uploaded")
            return np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts])

        x_train, y_train = stack(RAW_TRAIN)
        x_test, y_test = stack(RAW_TEST)
        data = Dataset.from_arrays(
            "uploaded", x_train, y_train, x_test, y_test, num_classes=plan.num_classes
        )
        trainer = WholeNetTrainer(self.server.bundle, "cloud")

        def on_epoch(epoch: int, train_acc: float, acc: float | None) -> None:
            result = {
                "epoch": epoch,
                "final_accuracy": acc,
                "train_final_accuracy": train_acc,
                "cloud_busy_s": round(trainer.busy_s, 3),
            }
            state.epochs[epoch] = result
            state.cloud_busy_s = trainer.busy_s
            session.send(Metrics(result))
            self.server.on_event("epoch", state, result)

        trainer.fit(data, plan.epochs, plan.batch_size, plan.seed, plan.augment, on_epoch)
        state.trained_ids = [
            (e, i) for e in range(plan.epochs) for i in range(-(-len(x_train) // plan.batch_size))
        ]
        state.last_trained_at = trainer.train_done_at
        state.raw.clear()
        state.done = True
        self.server.commit(session, state, force=True)
