"""Building blocks shared by the zoo models."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, pool: bool = False) -> nn.Sequential:
    """conv3x3 (no bias) + BatchNorm + ReLU, then a 2x2 max-pool when `pool`."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        relu=nn.ReLU(),
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def pool_fits(height: int, width: int) -> bool:
    """Whether a 2x2 max-pool keeps both sides >= 1 (small inputs skip pools that would not)."""
    return height >= 2 and width >= 2


def classifier(in_channels: int, num_classes: int) -> nn.Sequential:
    """Global average pool + Linear: works for any spatial size at the end of the network."""
    return nn.Sequential(
        OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(in_channels, num_classes),
        )
    )
