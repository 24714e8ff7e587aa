"""The one torch training step: forward, cross-entropy on the logits, backward, optimizer step.

The board's torch engine (front + exit head), the host's tail trainer (and its split-learning
form) and the whole-network trainer all train through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Batch = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class StepOutcome:
    """What one step gives back, detached from the graph."""

    loss: float
    outputs: tuple[torch.Tensor, ...]  # the module's outputs, the logits first
    input_grad: torch.Tensor | None  # d loss / d input, when asked for (split learning)

    @property
    def logits(self) -> torch.Tensor:
        return self.outputs[0]

    def correct(self, labels: Batch) -> int:
        """How many of the batch the logits classify right."""
        return int((self.logits.argmax(1) == _labels(labels)).sum())


def train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Batch,
    y: Batch,
    *,
    input_grad: bool = False,
) -> StepOutcome:
    """One optimizer step of `module` on a batch (float32 inputs, integer labels).

    `module` returns the logits, or a tuple whose first item is the logits (EdgeNet gives
    logits and the activation). `input_grad` also returns the loss's gradient with respect to
    the input: what the host sends back to the edge in split learning.
    """
    module.train()
    inputs = _inputs(x)
    if inputs.shape[0] == 1:
        # BatchNorm cannot take batch statistics from one sample ("Expected more than 1
        # value per channel when training"): the last batch of an epoch can hold one (289
        # samples in 32s), so that step normalises with the running statistics.
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()
    if input_grad:
        inputs.requires_grad_(True)
    out = module(inputs)
    outputs = out if isinstance(out, tuple) else (out,)
    loss = nn.functional.cross_entropy(outputs[0], _labels(y))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return StepOutcome(
        float(loss.detach()),
        tuple(o.detach() for o in outputs),
        inputs.grad if input_grad else None,
    )


def _inputs(x: Batch) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float32)
    return torch.from_numpy(np.ascontiguousarray(x, np.float32))


def _labels(y: Batch) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        return y.to(torch.int64)
    return torch.from_numpy(np.ascontiguousarray(y, np.int64))
