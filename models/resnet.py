"""CIFAR ResNet-18: 3x3 stem, no max-pool, four stages of two BasicBlocks."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from models.layers import classifier


class BasicBlock(nn.Module):
    """Two conv3x3-BN layers with an identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


def resnet18_blocks(
    input_shape: tuple[int, int, int], num_classes: int, width: int = 64
) -> list[tuple[str, nn.Module]]:
    """Blocks stem, layer1.0 .. layer4.1, classifier; stage widths width x (1, 2, 4, 8)."""
    stem = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False),
            bn=nn.BatchNorm2d(width),
            relu=nn.ReLU(),
        )
    )
    blocks: list[tuple[str, nn.Module]] = [("stem", stem)]
    channels = width
    for stage, (multiple, stride) in enumerate([(1, 1), (2, 2), (4, 2), (8, 2)], start=1):
        out_channels = width * multiple
        blocks.append((f"layer{stage}.0", BasicBlock(channels, out_channels, stride)))
        blocks.append((f"layer{stage}.1", BasicBlock(out_channels, out_channels, 1)))
        channels = out_channels
    blocks.append(("classifier", classifier(channels, num_classes)))
    return blocks
