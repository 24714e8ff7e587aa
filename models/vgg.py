"""CIFAR VGG-16 with BatchNorm: 13 conv blocks, the max-pools folded into the block before."""

from __future__ import annotations

from torch import nn

from models.layers import classifier, conv_bn_relu, pool_fits

# (stage, convs in the stage, channel multiple of `width`); a max-pool closes each stage.
_STAGES = [(1, 2, 1), (2, 2, 2), (3, 3, 4), (4, 3, 8), (5, 3, 8)]


def vgg16_blocks(
    input_shape: tuple[int, int, int], num_classes: int, width: int = 64
) -> list[tuple[str, nn.Module]]:
    """Blocks conv1_1 .. conv5_3, classifier (global avg-pool + Linear(8*width, classes)).

    A stage's max-pool is skipped when it would shrink a side below 1, so tiny inputs
    (1x8x8 digits) work; at 32x32 the five pools bring the map to 1x1 as in CIFAR VGG.
    """
    channels, height, side_w = input_shape
    blocks: list[tuple[str, nn.Module]] = []
    for stage, convs, multiple in _STAGES:
        out_channels = width * multiple
        for index in range(1, convs + 1):
            pool = index == convs and pool_fits(height, side_w)
            blocks.append((f"conv{stage}_{index}", conv_bn_relu(channels, out_channels, pool)))
            channels = out_channels
            if pool:
                height, side_w = height // 2, side_w // 2
    blocks.append(("classifier", classifier(channels, num_classes)))
    return blocks
