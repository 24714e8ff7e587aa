"""The early exit attached at the cut, and the network the edge trains (front + exit)."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import Tensor, nn

# A cap on the exit conv's width: the exit runs on the board, and at a deep cut (512 channels)
# a full-width 3x3 conv would cost as much as a backbone block.
MAX_EXIT_WIDTH = 128


def build_exit_head(
    activation_shape: tuple[int, ...], num_classes: int, width: int | None = None
) -> nn.Module:
    """The default early-exit classifier for an activation of per-sample `activation_shape`.

    For a (C, H, W) activation: Conv2d(C, width, 3, padding=1), ReLU, AdaptiveAvgPool2d(1),
    Flatten, Linear(width, num_classes), with width = min(C, 128) unless given; any H, W >= 1.
    For any other shape (a user model whose cut is flat): Flatten, Linear(numel, num_classes).
    """
    shape = tuple(int(side) for side in activation_shape)
    if len(shape) == 3:
        channels = shape[0]
        width = width if width is not None else min(channels, MAX_EXIT_WIDTH)
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(channels, width, 3, padding=1),
                relu=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(width, num_classes),
            )
        )
    return nn.Sequential(
        OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(math.prod(shape), num_classes))
    )


class EdgeNet(nn.Module):
    """What the board trains: the front, and the exit head on the front's activation."""

    def __init__(self, front: nn.Module, exit_head: nn.Module) -> None:
        super().__init__()
        self.front = front
        self.exit_head = exit_head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(exit logits, activation at the cut), in this order."""
        activation = self.front(x)
        return self.exit_head(activation), activation
