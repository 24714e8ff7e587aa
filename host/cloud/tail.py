"""The tail: blocks split+1.. and the final classifier, trained by the host on activations."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import Bundle
from edge_runtime.engines.torch_engine import build_optimizer, split_model_from_manifest
from host.export.bundle_writer import TAIL_WEIGHTS


class TailTrainer:
    """Trains the tail with its own loss and optimizer; never sends a gradient anywhere."""

    def __init__(self, bundle: Bundle) -> None:
        m = bundle.manifest
        self.tail: nn.Module = split_model_from_manifest(bundle).tail(m["split"])
        with np.load(bundle.side_path("cloud", TAIL_WEIGHTS), allow_pickle=False) as weights:
            self.tail.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
        self.optimizer = build_optimizer(self.tail.parameters(), m["cloud"]["optimizer"])
        self.loss_fn = nn.CrossEntropyLoss()

    def train_step(self, activation: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One optimizer step; returns (loss, correct predictions)."""
        self.tail.train()
        logits = self.tail(torch.from_numpy(np.ascontiguousarray(activation, np.float32)))
        y = torch.from_numpy(np.ascontiguousarray(labels, np.int64))
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((logits.argmax(1) == y).sum())

    def train_step_split(
        self, activation: np.ndarray, labels: np.ndarray
    ) -> tuple[float, int, np.ndarray]:
        """Split learning: one step, and the loss's gradient w.r.t. the activation for the edge."""
        self.tail.train()
        a = torch.from_numpy(np.ascontiguousarray(activation, np.float32)).requires_grad_(True)
        logits = self.tail(a)
        y = torch.from_numpy(np.ascontiguousarray(labels, np.int64))
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((logits.argmax(1) == y).sum()), a.grad.numpy()

    @torch.no_grad()
    def predict(self, activation: np.ndarray) -> np.ndarray:
        """Class predictions in inference mode."""
        self.tail.eval()
        logits = self.tail(torch.from_numpy(np.ascontiguousarray(activation, np.float32)))
        return logits.argmax(1).numpy()

    def state_dict(self) -> dict:
        return {"tail": self.tail.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.tail.load_state_dict(state["tail"])
        self.optimizer.load_state_dict(state["optimizer"])
