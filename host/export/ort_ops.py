"""Which ONNX ops ONNX Runtime training 1.19.2 cannot train through, found before export.

The table was made by trying, with onnxruntime-training 1.19.2 on x86_64: a front of Conv2d and
the op, `generate_artifacts`, then one training step. tests/export/test_export_validate.py checks
that each entry's torch layer exports to that op, that HardSwish still has no gradient builder,
and that AveragePool still fails its first step.

* No gradient builder is registered for these: `generate_artifacts` fails with
  "The gradient builder has not been registered: <Op>".
* AveragePool's and Resize's gradients are built but fail at the first training step (a
  SIGFPE, or "Sum node ... Can broadcast 0 by 0 or 1": timm's resnet10t with its average-pool
  shortcut). nn.AvgPool2d and nn.AdaptiveAvgPool2d(k > 1) export as AveragePool;
  nn.AdaptiveAvgPool2d(1) exports as GlobalAveragePool, which trains.
* LayerNormalization: the exporter writes one output, the gradient builder wants three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

from edge_runtime.errors import UsageFault

ORT_TRAINING_VERSION = "1.19.2"


@dataclass(frozen=True)
class Untrainable:
    """An op the ORT engine cannot train through: the torch layer behind it and what to use."""

    torch_name: str
    replacement: str


UNTRAINABLE: dict[str, Untrainable] = {
    "HardSwish": Untrainable("nn.Hardswish", "x * F.relu6(x + 3) / 6"),
    "HardSigmoid": Untrainable("nn.Hardsigmoid", "F.relu6(x + 3) / 6"),
    "Softplus": Untrainable(
        "nn.Softplus / nn.Mish", "torch.log1p(torch.exp(-x.abs())) + F.relu(x) for softplus(x)"
    ),
    "Elu": Untrainable("nn.ELU", "F.relu(x) + torch.clamp(x, max=0).exp() - 1"),
    "Celu": Untrainable("nn.CELU", "F.relu(x) + torch.clamp(x, max=0).exp() - 1 (alpha 1)"),
    "Selu": Untrainable(
        "nn.SELU", "1.0507 * (F.relu(x) + 1.6733 * (torch.clamp(x, max=0).exp() - 1))"
    ),
    "PRelu": Untrainable("nn.PReLU", "nn.LeakyReLU(0.25)"),
    "InstanceNormalization": Untrainable(
        "nn.GroupNorm / nn.InstanceNorm2d", "nn.BatchNorm2d, or mean/var over the group by hand"
    ),
    "LayerNormalization": Untrainable(
        "nn.LayerNorm",
        "(x - x.mean(dims, keepdim=True)) / (x.var(dims, keepdim=True, "
        "unbiased=False) + eps).sqrt() * weight + bias",
    ),
    "AveragePool": Untrainable(
        "nn.AvgPool2d / nn.AdaptiveAvgPool2d(k>1)",
        "a strided depthwise F.conv2d with a constant 1/k^2 weight buffer, or "
        "x.reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5)) for 2x2",
    ),
    "Resize": Untrainable(
        "nn.Upsample / F.interpolate", "x.repeat_interleave(2, 2).repeat_interleave(2, 3)"
    ),
}

_NOT_REGISTERED = re.compile(r"gradient builder has not been registered: (\w+) for node (\S+)")


class UnsupportedOpError(UsageFault):
    """The front uses an op the ORT engine cannot train; the message is one line."""


def block_of(node_name: str) -> str:
    """'/front/layer1_0/act/HardSwish' -> 'layer1_0' (the block inside EdgeNet's front)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) >= 2 and parts[0] in ("front", "exit_head"):
        block = parts[1].removeprefix(f"{parts[0]}.")
        return "the exit head" if parts[0] == "exit_head" else f"block {block!r}"
    return f"node {node_name!r}"


def message(op: str, where: str) -> str:
    """One line: the op, where it is, what to use instead, and the way out."""
    known = UNTRAINABLE.get(op)
    layer = f" ({known.torch_name})" if known else ""
    fix = f"replace it with {known.replacement}, " if known else "replace it, "
    return (
        f"{where} uses {op}{layer}, which ONNX Runtime training {ORT_TRAINING_VERSION} cannot "
        f"train through: {fix}or export with --engine torch (the torch engine trains it)"
    )


def check_trainable(model: onnx.ModelProto) -> None:
    """Raise UnsupportedOpError naming every untrainable op in the training graph, one line."""
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in UNTRAINABLE and node.op_type not in found:
            found[node.op_type] = block_of(node.name)
    if found:
        raise UnsupportedOpError("; ".join(message(op, where) for op, where in found.items()))


def from_ort_error(exc: BaseException) -> UnsupportedOpError | None:
    """The same one line for an op the table does not know, from generate_artifacts' error."""
    hit = _NOT_REGISTERED.search(" ".join(str(exc).split()))
    if hit is None:
        return None
    return UnsupportedOpError(message(hit.group(1), block_of(hit.group(2))))
