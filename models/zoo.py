"""The built-in models, each a factory returning a SplitModel."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.resnet import resnet18_blocks
from models.smallcnn import smallcnn_blocks
from models.split_model import SplitModel
from models.vgg import vgg16_blocks

BlockFactory = Callable[..., list[tuple[str, nn.Module]]]


def _zoo_model(name: str, blocks: BlockFactory, default_width: int) -> Callable[..., SplitModel]:
    def factory(
        input_shape: tuple[int, int, int] = (3, 32, 32),
        num_classes: int = 10,
        width: int = default_width,
    ) -> SplitModel:
        shape = tuple(int(side) for side in input_shape)
        return SplitModel(
            name=name,
            blocks=blocks(shape, num_classes, width),
            input_shape=shape,  # type: ignore[arg-type]
            num_classes=num_classes,
            spec={
                "model": name,
                "input_shape": list(shape),
                "num_classes": num_classes,
                "width": width,
            },
        )

    factory.__name__ = name
    factory.__doc__ = f"{name} as a SplitModel ({blocks.__doc__.splitlines()[0]})"
    return factory


resnet18 = _zoo_model("resnet18", resnet18_blocks, default_width=64)
vgg16 = _zoo_model("vgg16", vgg16_blocks, default_width=64)
smallcnn = _zoo_model("smallcnn", smallcnn_blocks, default_width=16)

# Name -> factory(input_shape=, num_classes=, width=) -> SplitModel.
KNOWN_MODELS: dict[str, Callable[..., SplitModel]] = {
    "resnet18": resnet18,
    "vgg16": vgg16,
    "smallcnn": smallcnn,
}
