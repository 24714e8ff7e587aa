"""PriPHiT's adversarial exit on the torch engine (Sepehri et al., arXiv 2408.05092).

Beside the front and its exit, the edge trains an adversary: a decoder that rebuilds the input
from the cut's activation. Each step, the adversary learns to reconstruct (MSE on the detached
activation), and front + exit learn to keep the exit's loss low and the adversary's error high:

    front + exit minimise   exit cross-entropy - lambda x MSE(adversary(activation), input)

so the activation keeps what the exit needs and sheds what the adversary uses. lambda = 0 is
plain hierarchical training with an idle adversary. Torch only: the ORT engine's artifacts are
one fixed training graph with one loss and one optimizer (docs/privacy.md says what it lacks).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import Bundle
from edge_runtime.engines.base import StepResult
from edge_runtime.engines.torch_engine import TorchEngine

ADVERSARY_WIDTH = 32


def check_lambda(value: float) -> float:
    """lambda as a float, or ValueError naming the range: finite and >= 0."""
    lam = float(value)
    if not (math.isfinite(lam) and lam >= 0.0):
        raise ValueError(
            f"adversarial exit weight lambda must be a finite number >= 0 (0: no adversarial "
            f"term), got {value}"
        )
    return lam


class AdversarialTorchEngine(TorchEngine):
    """The torch engine with an adversary decoder and the min-max objective above."""

    name = "torch"

    def __init__(
        self, bundle: Bundle, adv_lambda: float, *, threads: int | None = None, lr: float = 1e-3
    ) -> None:
        super().__init__(bundle, threads=threads)
        from models.inversion import InversionDecoder

        self.adv_lambda = check_lambda(adv_lambda)
        m = bundle.manifest
        self._adversary = InversionDecoder(
            tuple(m["activation"]["shape"]),
            tuple(m["input_shape"]),
            ADVERSARY_WIDTH,
            bounded=False,  # it rebuilds the standardised input the front sees
        )
        self._adv_optimizer = torch.optim.Adam(self._adversary.parameters(), lr=lr)
        self.last_adversary_mse = float("nan")

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._net.train()
        inputs = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        logits, activation = self._net(inputs)
        exit_loss = self._loss(logits, torch.from_numpy(np.ascontiguousarray(y, np.int64)))
        # Front + exit: the adversary's weights are held still for this gradient.
        for p in self._adversary.parameters():
            p.requires_grad_(False)
        reconstruction_error = nn.functional.mse_loss(self._adversary(activation), inputs)
        loss = exit_loss - self.adv_lambda * reconstruction_error
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        # The adversary: learn to rebuild the input from this step's activation.
        for p in self._adversary.parameters():
            p.requires_grad_(True)
        adv_loss = nn.functional.mse_loss(self._adversary(activation.detach()), inputs)
        self._adv_optimizer.zero_grad(set_to_none=True)
        adv_loss.backward()
        self._adv_optimizer.step()
        self.last_adversary_mse = float(adv_loss.detach())
        return StepResult(
            float(exit_loss.detach()), logits.detach().numpy(), activation.detach().numpy()
        )

    def save_checkpoint(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "net": self._net.state_dict(),
                "opt": self._optimizer.state_dict(),
                "adversary": self._adversary.state_dict(),
                "adv_opt": self._adv_optimizer.state_dict(),
            },
            tmp,
        )
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        super().load_checkpoint(path)
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if "adversary" in saved:  # a plain torch checkpoint starts a fresh adversary
            self._adversary.load_state_dict(saved["adversary"])
            self._adv_optimizer.load_state_dict(saved["adv_opt"])
