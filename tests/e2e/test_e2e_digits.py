"""On real handwritten digits: hierarchical training is as accurate as end-to-end training.

Both start from the same initial weights (the bundle's), use the same optimizer, batch size and
epochs. The hierarchical run is the real system (processes, TCP); the end-to-end reference is
the whole network (front + tail) trained with backpropagation through the cut.
"""

from __future__ import annotations

import numpy as np
import torch
from e2e_harness import run_edge, start_cloud

from edge_runtime.bundle import load_bundle
from edge_runtime.data import batches, load_dataset
from edge_runtime.engines.torch_engine import build_edge_net, build_optimizer
from host.cloud.tail import TailTrainer

EPOCHS = 10
BATCH = 32


def end_to_end_accuracy(bundle_dir, data_path: str) -> float:
    ds = load_dataset(data_path)
    torch.manual_seed(0)
    front = build_edge_net(load_bundle(bundle_dir / "edge")).front
    tail = TailTrainer(load_bundle(bundle_dir / "cloud")).tail
    whole = torch.nn.Sequential(front, tail)
    opt = build_optimizer(whole.parameters(), load_bundle(bundle_dir).manifest["edge"]["optimizer"])
    for epoch in range(EPOCHS):
        whole.train()
        for _, x, y in batches(ds, "train", BATCH, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(
                whole(torch.from_numpy(x)), torch.from_numpy(y)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    whole.eval()
    correct = total = 0
    with torch.no_grad():
        for _, x, y in batches(ds, "test", 256, epoch=0):
            correct += int((whole(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
            total += len(y)
    return correct / total


def test_hierarchical_matches_end_to_end_on_real_digits(exported, digits_path, tmp_path) -> None:
    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    cloud = start_cloud(bundle, tmp_path)
    edge = run_edge(
        bundle,
        cloud.url,
        tmp_path,
        "--data",
        str(digits_path),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
    )
    report = cloud.finish()
    assert edge["data"].startswith("digits") and "1437 train / 360 test" in edge["data"]
    hierarchical = report["final_accuracy"]
    reference = end_to_end_accuracy(bundle, str(digits_path))
    print(
        f"digits, {EPOCHS} epochs: hierarchical {hierarchical:.4f}, end-to-end {reference:.4f}, "
        f"edge exit {edge['edge_exit_accuracy']:.4f}"
    )
    assert reference > 0.85  # the reference itself learned
    assert hierarchical >= reference - 0.02, (hierarchical, reference)
    assert np.isfinite(edge["edge_exit_accuracy"]) and edge["edge_exit_accuracy"] > 0.85
