"""The default exit head fits any activation; EdgeNet returns (logits, activation)."""

import pytest
import torch
from torch import nn

from models import EdgeNet, build_exit_head, build_model


@pytest.mark.parametrize(
    "shape", [(64, 32, 32), (512, 4, 4), (512, 1, 1), (3, 1, 7), (1, 2, 2), (200,), (4, 5)]
)
@pytest.mark.parametrize("num_classes", [2, 10])
def test_exit_head_output_shape(shape, num_classes):
    head = build_exit_head(shape, num_classes)
    out = head(torch.randn(2, *shape))
    assert out.shape == (2, num_classes)


def test_exit_head_default_width_is_channels_capped_at_128():
    assert build_exit_head((32, 8, 8), 10).conv.out_channels == 32
    assert build_exit_head((512, 4, 4), 10).conv.out_channels == 128
    head = build_exit_head((512, 4, 4), 10, width=16)
    assert head.conv.out_channels == 16 and head.fc.in_features == 16


def test_flat_activation_gets_a_linear_head():
    head = build_exit_head((6, 5), 3)
    assert [type(m) for m in head.children()] == [nn.Flatten, nn.Linear]
    assert head.fc.in_features == 30


def test_edge_net_returns_logits_then_activation():
    model = build_model("smallcnn", input_shape=(1, 8, 8), num_classes=10)
    front = model.front(2)
    edge = EdgeNet(front, build_exit_head(model.activation_shape(2), 10))
    x = torch.randn(2, 1, 8, 8)
    logits, activation = edge(x)
    assert logits.shape == (2, 10)
    assert activation.shape == (2, *model.activation_shape(2))
    edge.eval()
    with torch.no_grad():
        torch.testing.assert_close(edge(x)[1], front(x))
    logits, _ = edge.train()(x)
    logits.sum().backward()
    assert all(p.grad is not None for p in front.parameters())
