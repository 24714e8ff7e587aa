"""Split learning's gradients are right: the edge's update equals end-to-end backprop's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.bundle import load_bundle
from edge_runtime.engines import EngineError, make_engine
from edge_runtime.engines.torch_engine import build_edge_net, build_optimizer
from host.cloud.tail import TailTrainer


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("engine_kind", ["ort", "torch"])
def test_split_update_equals_end_to_end_backprop(exported, engine_kind, optimizer) -> None:
    root = exported(
        "smallcnn", 3, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, baselines=True
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 16)

    # Split learning: edge forward, host tail step + activation gradient, edge backward.
    engine = make_engine(engine_kind, load_bundle(root / "edge"), variant="split")
    tail = TailTrainer(load_bundle(root / "cloud"))
    activation = engine.split_forward(x)
    _, _, grad = tail.train_step_split(activation, y)
    engine.split_backward(grad)
    split_front = {k: v for k, v in engine.export_weights().items() if k.startswith("front.")}

    # Reference: the whole network, one backprop step through the cut, same optimizer.
    front = build_edge_net(load_bundle(root / "edge")).front
    whole = torch.nn.Sequential(front, TailTrainer(load_bundle(root / "cloud")).tail).train()
    opt = build_optimizer(whole.parameters(), load_bundle(root).manifest["edge"]["optimizer"])
    loss = torch.nn.functional.cross_entropy(whole(torch.from_numpy(x)), torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
    reference = {f"front.{k}": v.detach().numpy() for k, v in front.state_dict().items()}

    initial = np.load(root / "edge" / "edge_weights.npz")
    moved = 0
    for name, value in split_front.items():
        np.testing.assert_allclose(value, reference[name], rtol=1e-4, atol=1e-6, err_msg=name)
        moved += not np.allclose(value, initial[name])
    assert moved > 0  # the update happened


def test_split_needs_baseline_artifacts(exported) -> None:
    with pytest.raises(EngineError, match="--baselines"):
        make_engine("ort", load_bundle(exported("smallcnn", 2) / "edge"), variant="split")
