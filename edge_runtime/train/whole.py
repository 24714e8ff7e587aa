"""The whole network (front + tail) trained in one place, with torch: the comparison modes.

`cloud` mode trains it on the host from the uploaded raw data; `edge` mode trains it on the
board with no link at all. Both start from the bundle's initial weights, like the split modes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.data import Dataset, batches
from edge_runtime.engines.base import EngineError
from edge_runtime.train.pacing import pace

EDGE_WEIGHTS, TAIL_WEIGHTS = "edge_weights.npz", "tail_weights.npz"


class WholeNetTrainer:
    """Front + tail as one torch network; `side` says which half of the bundle holds the weights."""

    def __init__(
        self, bundle: Bundle, side: str, threads: int | None = None, slowdown: float = 1.0
    ) -> None:
        import torch

        from edge_runtime.engines.torch_engine import build_optimizer, split_model_from_manifest

        if threads:
            torch.set_num_threads(threads)
        m = bundle.manifest
        if not m.get("baselines"):
            raise EngineError("training the whole network needs a bundle exported with --baselines")
        model = split_model_from_manifest(bundle)
        front, tail = model.front(m["split"]), model.tail(m["split"])
        with np.load(bundle.side_path(side, EDGE_WEIGHTS), allow_pickle=False) as w:
            front.load_state_dict(
                {
                    k[len("front.") :]: torch.from_numpy(w[k])
                    for k in w.files
                    if k.startswith("front.")
                }
            )
        with np.load(bundle.side_path(side, TAIL_WEIGHTS), allow_pickle=False) as w:
            tail.load_state_dict({k: torch.from_numpy(w[k]) for k in w.files})
        self._torch = torch
        self.net = torch.nn.Sequential(front, tail)
        self.optimizer = build_optimizer(self.net.parameters(), m["edge"]["optimizer"])
        self.busy_s = 0.0
        self.slowdown = slowdown  # board profile pacing, as in the edge's training loop
        self.train_done_at: float | None = None  # wall clock when the last epoch's training ended

    def train_epoch(
        self, ds: Dataset, epoch: int, batch_size: int, seed: int = 0, augment: bool = False
    ) -> float:
        """One epoch; returns the training accuracy."""
        torch = self._torch
        self.net.train()
        correct = seen = 0
        t = time.perf_counter()
        for _, x, y in batches(ds, "train", batch_size, epoch=epoch, seed=seed, augment=augment):
            step_t = time.perf_counter()
            logits = self.net(torch.from_numpy(x))
            target = torch.from_numpy(y)
            loss = torch.nn.functional.cross_entropy(logits, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            correct += int((logits.argmax(1) == target).sum())
            seen += len(y)
            pace(time.perf_counter() - step_t, self.slowdown)
        self.busy_s += time.perf_counter() - t
        self.train_done_at = time.time()
        return correct / max(seen, 1)

    def accuracy(self, ds: Dataset, batch_size: int = 256) -> float | None:
        """Test-set accuracy in inference mode."""
        torch = self._torch
        self.net.eval()
        correct = seen = 0
        t = time.perf_counter()
        with torch.no_grad():
            for _, x, y in batches(ds, "test", batch_size, epoch=0):
                step_t = time.perf_counter()
                correct += int((self.net(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
                seen += len(y)
                pace(time.perf_counter() - step_t, self.slowdown)
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
        acc = None
        for epoch in range(epochs):
            train_acc = self.train_epoch(ds, epoch, batch_size, seed, augment)
            acc = self.accuracy(ds)
            if on_epoch is not None:
                on_epoch(epoch, train_acc, acc)
        return acc
