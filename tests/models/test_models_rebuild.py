"""models.rebuild (manifest data + .npz weights -> torch modules) and models.train_step."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from models import (
    EdgeNet,
    ManifestError,
    ModelSpecError,
    build_exit_head,
    build_model,
    build_optimizer,
    model_from_spec,
    rebuild,
    train_step,
)
from models.optim import OrtStyleAdamW

SPLIT = 2
OPTIMIZER = {"type": "sgd", "lr": 0.1, "weight_decay": 0.0}


def save_npz(module: torch.nn.Module, path: Path) -> Path:
    np.savez(path, **{k: v.detach().numpy() for k, v in module.state_dict().items()})
    return path


def manifest_of(model, head_width: int | None = None) -> dict:
    """The parts of a bundle manifest that rebuild reads."""
    return {
        "model_spec": model.spec,
        "split": SPLIT,
        "num_classes": model.num_classes,
        "activation": {"shape": list(model.activation_shape(SPLIT))},
        "edge": {"exit_head_width": head_width, "optimizer": OPTIMIZER},
    }


@pytest.fixture
def saved(tmp_path):
    """A smallcnn split 2: its manifest data, and the edge and tail weights as export saves them."""
    torch.manual_seed(3)
    model = build_model("smallcnn", width=4)
    head = build_exit_head(model.activation_shape(SPLIT), model.num_classes)
    edge = EdgeNet(model.front(SPLIT), head)
    tail = model.tail(SPLIT)
    return (
        manifest_of(model),
        model,
        edge,
        save_npz(edge, tmp_path / "edge.npz"),
        save_npz(tail, tmp_path / "tail.npz"),
    )


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_rebuild_gives_the_saved_networks(saved, tmp_path) -> None:
    manifest, model, edge, edge_w, tail_w = saved
    torch.manual_seed(99)  # a different init: only the loaded weights can make them equal
    assert same_state(rebuild.edge_net(manifest, tmp_path, edge_w), edge)
    assert same_state(rebuild.tail(manifest, tmp_path, tail_w), model.tail(SPLIT))
    whole = rebuild.whole_net(manifest, tmp_path, edge_w, tail_w).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.tail(SPLIT).eval()(model.front(SPLIT).eval()(x))
        assert torch.equal(whole(x), expected)


def test_rebuild_names_weights_that_do_not_fit(saved, tmp_path) -> None:
    manifest, _, _, edge_w, tail_w = saved
    with pytest.raises(ManifestError, match="tail weights do not fit the model"):
        rebuild.tail(manifest, tmp_path, edge_w)
    with pytest.raises(ManifestError, match="does not exist"):
        rebuild.tail(manifest, tmp_path, tmp_path / "absent.npz")
    wider = manifest_of(build_model("smallcnn", width=8))
    with pytest.raises(ManifestError, match="edge weights do not fit the model"):
        rebuild.edge_net(wider, tmp_path, edge_w)


def test_a_bundled_user_model_is_built_from_the_bundle_copy(tmp_path) -> None:
    source = textwrap.dedent(
        """
        from torch import nn

        def net(input_shape, num_classes):
            return nn.Sequential(
                nn.Conv2d(input_shape[0], 4, 3, padding=1),
                nn.Flatten(),
                nn.Linear(4 * input_shape[1] * input_shape[2], num_classes),
            )
        """
    )
    half = tmp_path / "cloud"
    half.mkdir()
    (half / "user_model.py").write_text(source)
    # As export writes it: the original path is gone; the bundle holds the copy.
    spec = {
        "model": "/nowhere/original.py:net",
        "source": "/nowhere/original.py",
        "bundled_source": "user_model.py",
        "factory": "net",
        "input_shape": [1, 8, 8],
        "num_classes": 3,
    }
    model = model_from_spec(spec, half)
    assert model.block_names == ["0", "1", "2"] and model.num_classes == 3
    with pytest.raises(ModelSpecError, match="needs the bundle directory"):
        model_from_spec(spec)


def test_train_step_is_the_step_written_by_hand() -> None:
    torch.manual_seed(0)
    net = build_model("smallcnn", width=4).tail(SPLIT)
    by_hand = copy.deepcopy(net)
    x = torch.randn(4, *build_model("smallcnn", width=4).activation_shape(SPLIT))
    y = np.array([0, 1, 2, 3])
    opt, opt_hand = (
        build_optimizer(net.parameters(), OPTIMIZER),
        torch.optim.SGD(by_hand.parameters(), lr=0.1),
    )
    step = train_step(net, opt, x.numpy(), y, input_grad=True)

    a = x.clone().requires_grad_(True)
    logits = by_hand.train()(a)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    opt_hand.zero_grad()
    loss.backward()
    opt_hand.step()

    assert step.loss == float(loss.detach())
    assert torch.equal(step.logits, logits.detach())
    assert step.correct(y) == int((logits.argmax(1) == torch.from_numpy(y)).sum())
    assert torch.equal(step.input_grad, a.grad)
    assert same_state(net, by_hand)


def test_train_step_keeps_every_output_of_an_edge_net() -> None:
    torch.manual_seed(0)
    model = build_model("smallcnn", width=4)
    edge = EdgeNet(model.front(SPLIT), build_exit_head(model.activation_shape(SPLIT), 10))
    step = train_step(
        edge, build_optimizer(edge.parameters(), OPTIMIZER), np.zeros((2, 3, 32, 32)), [1, 2]
    )
    logits, activation = step.outputs
    assert logits.shape == (2, 10) and activation.shape == (2, *model.activation_shape(SPLIT))
    assert step.input_grad is None and not logits.requires_grad


def test_build_optimizer_names_what_the_manifest_says() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(params, {"type": "adamw", "lr": 1e-3}), OrtStyleAdamW)
    assert isinstance(build_optimizer(params, OPTIMIZER), torch.optim.SGD)
    with pytest.raises(ManifestError, match="unknown optimizer 'lamb'"):
        build_optimizer(params, {"type": "lamb", "lr": 1e-3})


def test_a_one_sample_batch_trains_a_net_with_batchnorm() -> None:
    """The last batch of an epoch can hold one sample (289 samples in batches of 32): torch's
    BatchNorm cannot take batch statistics from it ("Expected more than 1 value per channel
    when training"), which killed the host's session thread while the edge waited 120 s. A
    one-sample step uses the running statistics instead (and leaves them as they were)."""
    import torch
    from torch import nn

    from models import build_optimizer
    from models.train_step import train_step

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = build_optimizer(net.parameters(), {"type": "adamw", "lr": 0.01})
    before = [p.detach().clone() for p in net.parameters()]
    stats = net[1].running_mean.clone()
    outcome = train_step(net, optimizer, torch.randn(1, 4), torch.tensor([2]))
    assert outcome.logits.shape == (1, 3)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert torch.equal(net[1].running_mean, stats) and net.training
    train_step(net, optimizer, torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    assert not torch.equal(net[1].running_mean, stats)  # batches of more use batch statistics
