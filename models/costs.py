"""Per-split costs: parameters, FLOPs and activation size on each side of every cut."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from models.exit_head import build_exit_head
from models.split_model import SplitModel, eval_mode

FP32_BYTES = 4


def param_count(module: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm running stats excluded)."""
    return sum(p.numel() for p in module.parameters())


class FlopCounter:
    """Forward FLOPs per sample, as 2 x multiply-accumulates of conv and linear layers.

    Other layers (BatchNorm, activations, pooling, additions) are not counted: they are a
    small share of a CNN's cost and the figure is meant for comparing splits.
    """

    def __init__(self) -> None:
        self.flops = 0

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        per_sample_out = output.numel() // max(output.shape[0], 1)
        if isinstance(module, _ConvNd):
            macs_per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:
            macs_per_output = module.in_features  # type: ignore[assignment]
        self.flops += 2 * per_sample_out * macs_per_output

    @contextmanager
    def counting(self, module: nn.Module) -> Iterator[FlopCounter]:
        """Count the FLOPs of forwards through `module` while inside the with-block."""
        handles = [
            m.register_forward_hook(self._hook)
            for m in module.modules()
            if isinstance(m, (_ConvNd, nn.Linear))
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def split_table(model: SplitModel) -> list[dict]:
    """One row per valid split: params, FLOPs and activation bytes on each side of the cut.

    Edge figures include the default exit head (build_exit_head) at that split. The blocks run
    once, on a batch of 1 in eval mode; only the small exit heads run once per split.
    """
    block_flops: list[int] = []
    activations: list[Tensor] = []
    x = torch.zeros(1, *model.input_shape)
    for _, block in model.blocks:
        counter = FlopCounter()
        with eval_mode(block), torch.no_grad(), counter.counting(block):
            x = block(x)
        block_flops.append(counter.flops)
        activations.append(x)
    block_params = [param_count(block) for _, block in model.blocks]
    raw_bytes = math.prod(model.input_shape)  # uint8 input

    rows = []
    # Building the heads must not move the caller's RNG (it would change their init).
    with torch.random.fork_rng(devices=[]):
        for split in model.valid_splits:
            activation = activations[split - 1]
            shape = tuple(activation.shape[1:])
            head = build_exit_head(shape, model.num_classes)
            counter = FlopCounter()
            with eval_mode(head), torch.no_grad(), counter.counting(head):
                head(activation)
            activation_bytes = FP32_BYTES * math.prod(shape)
            rows.append(
                {
                    "split": split,
                    "block": model.block_names[split - 1],
                    "edge_params": sum(block_params[:split]) + param_count(head),
                    "tail_params": sum(block_params[split:]),
                    "edge_flops": sum(block_flops[:split]) + counter.flops,
                    "tail_flops": sum(block_flops[split:]),
                    "activation_shape": list(shape),
                    "activation_bytes": activation_bytes,
                    "raw_bytes": raw_bytes,
                    "activation_ratio": activation_bytes / raw_bytes,
                }
            )
    return rows
