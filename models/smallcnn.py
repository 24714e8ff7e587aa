"""A small fast CNN for tests and the demo: four conv blocks and a classifier."""

from __future__ import annotations

from torch import nn

from models.layers import classifier, conv_bn_relu, pool_fits


def smallcnn_blocks(
    input_shape: tuple[int, int, int], num_classes: int, width: int = 16
) -> list[tuple[str, nn.Module]]:
    """Blocks conv1 .. conv4 (widths w, 2w, 2w, 4w), classifier.

    conv1..conv3 end in a 2x2 max-pool while both sides are >= 2: 32x32 -> 4x4, 8x8 -> 1x1.
    """
    channels, height, side_w = input_shape
    blocks: list[tuple[str, nn.Module]] = []
    for index, multiple in enumerate([1, 2, 2, 4], start=1):
        out_channels = width * multiple
        pool = index < 4 and pool_fits(height, side_w)
        blocks.append((f"conv{index}", conv_bn_relu(channels, out_channels, pool)))
        channels = out_channels
        if pool:
            height, side_w = height // 2, side_w // 2
    blocks.append(("classifier", classifier(channels, num_classes)))
    return blocks
