"""A decoder from the cut's activation back to the input: the privacy audit's learned attack
and the adversary of an adversarial exit (PriPHiT) are both one of these."""

from __future__ import annotations

import math

import torch
from torch import nn


class InversionDecoder(nn.Module):
    """Activation -> image of `image_shape`.

    Convolutional where the cut keeps a spatial map of at least 4x4 (upsampled to the image
    size), otherwise a two-layer MLP into a small conv head. `bounded=True` ends in a sigmoid
    (pixels in [0, 1]); otherwise the output is unbounded (a standardised input).
    """

    def __init__(
        self,
        activation_shape: tuple[int, ...],
        image_shape: tuple[int, int, int],
        width: int = 64,
        *,
        bounded: bool = True,
    ) -> None:
        super().__init__()
        channels, height, side = image_shape
        self.bounded = bounded
        spatial = len(activation_shape) == 3 and activation_shape[1] * activation_shape[2] >= 16
        if spatial:
            self.body: nn.Module = nn.Sequential(
                nn.Conv2d(activation_shape[0], width, 3, padding=1),
                nn.ReLU(),
                nn.Upsample(size=(height, side), mode="bilinear", align_corners=False),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
            )
        else:
            hidden = 8 * width
            self.body = nn.Sequential(
                nn.Flatten(),
                nn.Linear(math.prod(activation_shape), hidden),
                nn.ReLU(),
                nn.Linear(hidden, (width // 2) * height * side),
                nn.ReLU(),
                nn.Unflatten(1, (width // 2, height, side)),
            )
            width = width // 2
        self.head = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        """Reconstructions, (N, C, H, W)."""
        out = self.head(self.body(activation))
        return torch.sigmoid(out) if self.bounded else out
