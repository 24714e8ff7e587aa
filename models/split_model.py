"""A network as an ordered list of named blocks, cut at a split point."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from models.errors import ModelSpecError


def module_name(block_name: str) -> str:
    """The child name a block gets inside an nn.Sequential ('layer1.0' -> 'layer1_0')."""
    return block_name.replace(".", "_")


@dataclass
class SplitModel:
    """A model cut into named blocks; split k puts blocks[:k] on the edge, blocks[k:] on the host.

    The last block is the final classifier. front() and tail() share the block modules (and so
    the parameters) with this object; they do not copy.
    """

    name: str
    blocks: list[tuple[str, nn.Module]]
    input_shape: tuple[int, int, int]
    num_classes: int
    spec: dict

    @property
    def block_names(self) -> list[str]:
        return [name for name, _ in self.blocks]

    @property
    def valid_splits(self) -> range:
        """Splits that leave at least one block on each side."""
        return range(1, len(self.blocks))

    def check_split(self, split: int) -> None:
        """Raise ModelSpecError unless `split` is one of valid_splits."""
        ok = isinstance(split, int) and not isinstance(split, bool) and split in self.valid_splits
        if ok:
            return
        splits = self.valid_splits
        if len(splits) == 0:
            valid = "none: the model needs at least 2 blocks"
        else:
            valid = f"valid {splits.start}..{splits.stop - 1}"
        raise ModelSpecError(
            f"split {split!r} is out of range for {self.name}: {valid} "
            f"(split k puts the first k of: {', '.join(self.block_names)} on the edge)"
        )

    def front(self, split: int) -> nn.Sequential:
        """blocks[:split] as one nn.Sequential, children named by block name."""
        self.check_split(split)
        return _sequential(self.blocks[:split])

    def tail(self, split: int) -> nn.Sequential:
        """blocks[split:] as one nn.Sequential, children named by block name."""
        self.check_split(split)
        return _sequential(self.blocks[split:])

    def activation_shape(self, split: int) -> tuple[int, ...]:
        """Per-sample shape of the activation at the cut (a dry forward, batch 1, eval mode)."""
        front = self.front(split)
        x = torch.zeros(1, *self.input_shape)
        with eval_mode(front), torch.no_grad():
            out = front(x)
        return tuple(out.shape[1:])


def _sequential(blocks: list[tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((module_name(name), block) for name, block in blocks))


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put `module` in eval mode for a with-block, then restore each submodule's own mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
