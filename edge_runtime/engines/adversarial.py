"""PriPHiT's adversarial exit on the torch engine (Sepehri et al., arXiv 2408.05092).

Beside the front and its exit, the edge trains an adversary: a decoder that rebuilds the input
from the activation as it is released. Each step the adversary first catches up with the current
front (`ADVERSARY_STEPS` Adam steps over the last `ADVERSARY_MEMORY` batches), then front + exit
take one step on

    exit cross-entropy + lambda x max(0, mean-image error - MSE(adversary(released), input))

so the activation keeps what the exit needs and sheds what the adversary uses, up to the point
where the adversary does no better than guessing the batch's mean image. With the edge's
activation noise (`noise`), `released` is the clipped and noised activation (the clip is
differentiable; fresh torch noise each step) and the exit reads it too, as the tail will.

Why each part (docs/privacy.md has the measurements): the audit's attacker fits a fresh decoder
to the final front, so the defence must remove information, not fool one decoder.
- The adversary reads its input through a BatchNorm without affine weights, and is kept near its
  optimum by several steps per front step over recent batches: otherwise the front wins by
  rescaling or rotating the activation, which a fresh decoder undoes at once.
- The penalty is bounded at the mean image's error: an unbounded `- lambda x MSE` lets the front
  run away against a lagging adversary and wreck the exit while keeping the information.
- Without noise the front cannot lose information in float32 by scaling; measured, lambda then
  buys under 1 dB. With the clip fixing the scale and the noise fixing a floor, the front can
  push the image's detail under the noise, and the fresh attacker loses it.

lambda = 0 is plain training (with the release's noise in the loop when given) and an adversary
that learns but has no say. Torch only: the ORT engine's artifacts are one fixed training graph
with one loss and one optimizer (docs/privacy.md says what it lacks).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import Bundle
from edge_runtime.engines.base import StepResult
from edge_runtime.engines.torch_engine import TorchEngine
from edge_runtime.privacy import ActivationNoise, check_lambda

ADVERSARY_WIDTH = 32
ADVERSARY_STEPS = 5  # adversary steps per front step: keeps it near its optimum
ADVERSARY_MEMORY = 8  # recent input batches it trains on, re-encoded by the current front
ADVERSARY_LR = 3e-3

__all__ = ["AdversarialTorchEngine", "build_adversary", "check_lambda", "release"]


def build_adversary(activation_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> nn.Module:
    """Scale-free input (BatchNorm, no affine) into the audit's decoder, unbounded output (it
    rebuilds the standardised input the front sees)."""
    from models.inversion import InversionDecoder

    channels = activation_shape[0]
    norm = (
        nn.BatchNorm2d(channels, affine=False)
        if len(activation_shape) == 3
        else nn.BatchNorm1d(channels, affine=False)
    )
    decoder = InversionDecoder(activation_shape, tuple(input_shape), ADVERSARY_WIDTH, bounded=False)
    return nn.Sequential(norm, decoder)


def release(activation: torch.Tensor, noise: ActivationNoise | None) -> torch.Tensor:
    """`ActivationNoise.apply` in torch, differentiable through the clip (training only: the
    edge's released activations still come from edge_runtime/privacy.py with OS-seeded noise)."""
    if noise is None:
        return activation
    norms = activation.flatten(1).norm(dim=1).clamp_min(1e-12)
    scale = torch.clamp(noise.clip / norms, max=1.0).view(-1, *[1] * (activation.dim() - 1))
    clipped = activation * scale
    if noise.noise_multiplier == 0.0:
        return clipped
    return clipped + noise.sigma * torch.randn_like(clipped)


@contextmanager
def frozen_batch_stats(module: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm (batch statistics, as the released activations are computed) that
    leaves the running statistics alone: the adversary's re-encodings of remembered batches
    must not count them again in the statistics the exported front evaluates with."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = running x (1 - 0) + batch x 0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


class AdversarialTorchEngine(TorchEngine):
    """The torch engine with an adversary decoder and the min-max objective above."""

    name = "torch"

    def __init__(
        self,
        bundle: Bundle,
        adv_lambda: float,
        *,
        noise: ActivationNoise | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(bundle, threads=threads)
        self.adv_lambda = check_lambda(adv_lambda)
        self.noise = noise
        m = bundle.manifest
        self._adversary = build_adversary(tuple(m["activation"]["shape"]), m["input_shape"])
        self._adv_optimizer = torch.optim.Adam(self._adversary.parameters(), lr=ADVERSARY_LR)
        self._memory: deque[torch.Tensor] = deque(maxlen=ADVERSARY_MEMORY)
        self.last_adversary_mse = float("nan")

    def _train_adversary(self) -> None:
        """Catch up with the current front on the remembered batches (newest first), each
        re-encoded by the current front: ADVERSARY_STEPS extra forward passes through the front
        per step, the defence's main cost. (Keeping the released activations of older fronts
        instead saves them, but measured on the digits the front then outran its adversary and
        the exit lost 17-32 points at lambda 2: docs/privacy.md.)"""
        self._adversary.train()
        remembered = list(self._memory)[::-1]
        for i in range(ADVERSARY_STEPS):
            inputs = remembered[i % len(remembered)]
            with torch.no_grad(), frozen_batch_stats(self._net.front):
                released = release(self._net.front(inputs), self.noise)
            loss = nn.functional.mse_loss(self._adversary(released), inputs)
            self._adv_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._adv_optimizer.step()

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._net.train()
        inputs = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        self._memory.append(inputs)
        self._train_adversary()
        activation = self._net.front(inputs)
        released = release(activation, self.noise)
        # With noise the exit reads what the tail will get, so class information stays above it.
        logits = self._net.exit_head(released if self.noise is not None else activation)
        exit_loss = self._loss(logits, torch.from_numpy(np.ascontiguousarray(y, np.int64)))
        # Front + exit: the adversary's weights are held still for this gradient.
        for p in self._adversary.parameters():
            p.requires_grad_(False)
        reconstruction_error = nn.functional.mse_loss(self._adversary(released), inputs)
        mean_image_error = ((inputs - inputs.mean(dim=0, keepdim=True)) ** 2).mean()
        shortfall = torch.relu(mean_image_error - reconstruction_error)
        loss = exit_loss + self.adv_lambda * shortfall
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        for p in self._adversary.parameters():
            p.requires_grad_(True)
        self.last_adversary_mse = float(reconstruction_error.detach())
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
