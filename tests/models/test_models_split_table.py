"""split_table: a row per split, parameters that add up, FLOPs checked by hand."""

import pytest
import torch
from torch import nn

from models import KNOWN_MODELS, SplitModel, build_model, split_table


def tiny_net() -> SplitModel:
    torch.manual_seed(0)
    blocks = [
        ("conv", nn.Conv2d(1, 2, 3, padding=1)),  # 1x4x4 -> 2x4x4
        ("down", nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)),  # -> 4x2x2
        ("classifier", nn.Sequential(nn.Flatten(), nn.Linear(16, 3))),
    ]
    return SplitModel("tiny", blocks, (1, 4, 4), 3, {"model": "tiny"})


def test_tiny_net_by_hand():
    rows = split_table(tiny_net())
    assert [r["split"] for r in rows] == [1, 2]
    assert [r["block"] for r in rows] == ["conv", "down"]

    conv = 2 * (2 * 4 * 4) * (1 * 9)  # 2 x outputs x MACs per output = 576
    down = 2 * (4 * 2 * 2) * (1 * 9)  # grouped: 2/2 input channels per output = 288
    fc = 2 * 3 * 16  # 96
    # Default exit heads: conv3x3 C->C (C <= 128) then Linear(C, 3).
    head1 = 2 * (2 * 4 * 4) * (2 * 9) + 2 * 3 * 2  # 1152 + 12
    head2 = 2 * (4 * 2 * 2) * (4 * 9) + 2 * 3 * 4  # 1152 + 24

    first, second = rows
    assert first["edge_flops"] == conv + head1 == 1740
    assert first["tail_flops"] == down + fc == 384
    assert second["edge_flops"] == conv + down + head2 == 2040
    assert second["tail_flops"] == fc

    assert first["edge_params"] == 20 + (2 * 2 * 9 + 2) + (2 * 3 + 3)
    assert first["tail_params"] == 40 + 51
    assert second["edge_params"] == 20 + 40 + (4 * 4 * 9 + 4) + (4 * 3 + 3)
    assert second["tail_params"] == 51

    assert first["activation_shape"] == [2, 4, 4] and second["activation_shape"] == [4, 2, 2]
    assert first["activation_bytes"] == 4 * 32 and second["activation_bytes"] == 4 * 16
    assert first["raw_bytes"] == second["raw_bytes"] == 16
    assert first["activation_ratio"] == 8.0 and second["activation_ratio"] == 4.0


@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_rows_for_every_split_and_params_add_up(name):
    model = build_model(name, input_shape=(3, 32, 32))
    rows = split_table(model)
    assert [r["split"] for r in rows] == list(model.valid_splits)
    assert [r["block"] for r in rows] == model.block_names[:-1]
    total = sum(p.numel() for _, block in model.blocks for p in block.parameters())
    for row in rows:
        head = model.front(row["split"])  # edge without head = params of the front
        edge_without_head = sum(p.numel() for p in head.parameters())
        assert edge_without_head + row["tail_params"] == total
        assert row["edge_params"] > edge_without_head
        assert row["activation_shape"] == list(model.activation_shape(row["split"]))
        assert row["raw_bytes"] == 3 * 32 * 32
        assert row["edge_flops"] > 0 and row["tail_flops"] > 0
    tails = [r["tail_flops"] for r in rows]
    assert tails == sorted(tails, reverse=True)


def test_resnet18_total_flops():
    # CIFAR ResNet-18 is about 0.56 GMACs per 32x32 image.
    rows = split_table(build_model("resnet18"))
    last = rows[-1]
    head_flops = 2 * (4 * 4) * 128 * 512 * 9 + 2 * 128 * 10
    backbone = last["edge_flops"] - head_flops + last["tail_flops"]
    assert 1.10e9 < backbone < 1.13e9


def test_blocks_run_once_and_modes_and_rng_are_kept():
    model = build_model("smallcnn", input_shape=(1, 8, 8))
    calls = []
    for name, block in model.blocks:
        block.register_forward_pre_hook(lambda *_, name=name: calls.append(name))
    for _, block in model.blocks:
        block.train()
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    rows = split_table(model)
    assert torch.rand(1) == expected
    assert calls == model.block_names
    assert all(m.training for _, b in model.blocks for m in b.modules())
    assert len(rows) == 4
