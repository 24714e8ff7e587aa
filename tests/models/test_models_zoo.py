"""The zoo models build for several input shapes, split, and recompose exactly."""

import json

import pytest
import torch
from torch import nn

from models import KNOWN_MODELS, build_model

SHAPES = [((3, 32, 32), 10), ((1, 8, 8), 10), ((3, 64, 64), 200)]

BLOCK_NAMES = {
    "resnet18": ["stem"]
    + [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    + ["classifier"],
    "vgg16": [
        f"conv{s}_{i}" for s, n in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] for i in range(1, n + 1)
    ]
    + ["classifier"],
    "smallcnn": ["conv1", "conv2", "conv3", "conv4", "classifier"],
}


def test_known_models():
    assert set(KNOWN_MODELS) == {"resnet18", "vgg16", "smallcnn"}


@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_block_names(name):
    model = build_model(name)
    assert model.block_names == BLOCK_NAMES[name]
    assert model.valid_splits == range(1, len(BLOCK_NAMES[name]))


@pytest.mark.parametrize("input_shape,num_classes", SHAPES)
@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_front_then_tail_equals_full_model(name, input_shape, num_classes):
    torch.manual_seed(0)
    model = build_model(name, input_shape=input_shape, num_classes=num_classes)
    assert model.input_shape == input_shape and model.num_classes == num_classes
    full = nn.Sequential(*(block for _, block in model.blocks)).eval()
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        expected = full(x)
    assert expected.shape == (2, num_classes)
    last = model.valid_splits[-1]
    for split in (1, len(model.blocks) // 2, last):
        front, tail = model.front(split).eval(), model.tail(split).eval()
        with torch.no_grad():
            activation = front(x)
            out = tail(activation)
        assert tuple(activation.shape[1:]) == model.activation_shape(split)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_front_and_tail_share_parameters_with_the_model():
    model = build_model("smallcnn")
    front, tail = model.front(2), model.tail(2)
    assert [n for n, _ in front.named_children()] == ["conv1", "conv2"]
    assert [n for n, _ in tail.named_children()] == ["conv3", "conv4", "classifier"]
    assert front.conv1 is model.blocks[0][1]
    n_front = sum(p.numel() for p in front.parameters())
    n_tail = sum(p.numel() for p in tail.parameters())
    assert n_front + n_tail == sum(p.numel() for _, b in model.blocks for p in b.parameters())


def test_front_children_have_module_safe_names():
    front = build_model("resnet18").front(3)
    assert [n for n, _ in front.named_children()] == ["stem", "layer1_0", "layer1_1"]


def test_activation_shape_keeps_training_mode_and_rng():
    model = build_model("smallcnn")
    front = model.front(2).train()
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    assert model.activation_shape(2) == (32, 8, 8)
    assert torch.rand(1) == expected
    assert all(m.training for m in front.modules())


@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_init_is_deterministic_given_the_seed(name):
    torch.manual_seed(7)
    a = build_model(name, input_shape=(1, 8, 8))
    torch.manual_seed(7)
    b = build_model(name, input_shape=(1, 8, 8))
    for (_, block_a), (_, block_b) in zip(a.blocks, b.blocks, strict=True):
        for pa, pb in zip(
            block_a.state_dict().values(), block_b.state_dict().values(), strict=True
        ):
            assert torch.equal(pa, pb)


def test_vgg16_skips_pools_that_do_not_fit():
    # 8x8 takes three pools (8 -> 4 -> 2 -> 1); the last two stages keep 1x1.
    model = build_model("vgg16", input_shape=(1, 8, 8))
    assert model.activation_shape(2) == (64, 4, 4)
    assert model.activation_shape(13) == (512, 1, 1)
    # 32x32 pools after every stage, as CIFAR VGG-16 does.
    assert build_model("vgg16").activation_shape(10) == (512, 2, 2)


def test_width_scales_and_spec_rebuilds():
    model = build_model("smallcnn", input_shape=(1, 8, 8), num_classes=3, width=4)
    assert model.activation_shape(4) == (16, 1, 1)
    spec = json.loads(json.dumps(model.spec))
    assert spec == {"model": "smallcnn", "input_shape": [1, 8, 8], "num_classes": 3, "width": 4}
    torch.manual_seed(1)
    rebuilt = build_model(spec)
    assert rebuilt.spec == model.spec
    assert rebuilt.block_names == model.block_names
    assert build_model("resnet18").spec["width"] == 64


def test_smallcnn_trains_a_few_steps():
    torch.manual_seed(0)
    model = build_model("smallcnn", input_shape=(1, 8, 8), num_classes=2)
    net = nn.Sequential(*(b for _, b in model.blocks))
    x = torch.randn(16, 1, 8, 8)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
