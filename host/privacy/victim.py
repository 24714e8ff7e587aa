"""The fronts an audit attacks: the bundle's initial front, and a trained one.

Building torch modules from a bundle happens in `edge_net_from_bundle` only, so that when the
bundle-to-torch loader is consolidated in models/ there is one call to switch.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import Bundle, BundleError, load_bundle
from edge_runtime.data import Dataset, batches
from edge_runtime.engines import Engine, make_engine
from edge_runtime.errors import HiertrainError
from edge_runtime.privacy import ActivationNoise


class AuditError(HiertrainError):
    """An audit cannot run on what it was given (a runtime failure, exit 1)."""


def edge_bundle(path: Path) -> Bundle:
    """The edge side of a bundle, given the bundle directory or its edge/ directory."""
    path = Path(path)
    bundle = load_bundle(path / "edge" if (path / "edge").is_dir() else path)
    if bundle.side != "edge":
        raise BundleError(f"{path} is not a bundle directory or a bundle's edge/ directory")
    return bundle


def edge_net_from_bundle(bundle: Bundle) -> nn.Module:
    """Front + exit head (models.EdgeNet) with the bundle's initial weights.

    Uses the project's one bundle-to-torch loader today (the torch engine's build_edge_net, over
    models.build_model); the only place the audit builds a module from a bundle.
    """
    from edge_runtime.engines.torch_engine import build_edge_net

    return build_edge_net(bundle)


def _with_weights(bundle: Bundle, weights: dict[str, np.ndarray]) -> nn.Module:
    net = edge_net_from_bundle(bundle)
    state = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise AuditError(
            f"the trained weights do not fit the bundle's front: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    return net


def checkpoint_engine(path: Path) -> str:
    """Which engine wrote an edge checkpoint: torch.save writes a zip archive, ORT does not."""
    return "torch" if zipfile.is_zipfile(path) else "ort"


def from_checkpoint(bundle: Bundle, path: Path) -> nn.Module:
    """Front + exit with the weights of an edge checkpoint (`engine.ckpt` in an edge's
    --work-dir), written by either engine."""
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"checkpoint {path} does not exist (an edge's --work-dir has engine.ckpt)")
    engine = make_engine(checkpoint_engine(path), bundle, threads=torch.get_num_threads())
    engine.load_checkpoint(path)
    return _with_weights(bundle, engine.export_weights())


@dataclass
class BriefTraining:
    """How the audit trained the front itself, and the exit accuracy it reached."""

    epochs: int
    batch_size: int
    samples: int
    exit_accuracy: float | None


def train_briefly(
    bundle: Bundle,
    data: Dataset,
    epochs: int,
    batch_size: int,
    seed: int,
    adv_lambda: float | None = None,
    noise: ActivationNoise | None = None,
) -> tuple[nn.Module, BriefTraining]:
    """Train front + exit as the edge does (the torch engine's train step, the exit's loss, the
    manifest's optimizer) on `data`'s train split. Plain training ignores `noise`, which changes
    only what is released; PriPHiT's adversarial exit (`adv_lambda`) trains with it in the loop,
    as the edge's does."""
    engine: Engine
    if adv_lambda is None:
        engine = make_engine("torch", bundle, threads=torch.get_num_threads())
    else:
        from edge_runtime.engines.adversarial import AdversarialTorchEngine

        engine = AdversarialTorchEngine(
            bundle, adv_lambda, noise=noise, threads=torch.get_num_threads()
        )
    for epoch in range(epochs):
        for _, x, y in batches(data, "train", batch_size, epoch=epoch, seed=seed):
            engine.train_step(x, y)
    accuracy = None
    if len(data.y_test):
        hits = 0
        for _, x, y in batches(data, "test", 256, epoch=0):
            hits += int((engine.eval_step(x, y).logits.argmax(axis=1) == y).sum())
        accuracy = hits / len(data.y_test)
    info = BriefTraining(epochs, batch_size, len(data.y_train), accuracy)
    return _with_weights(bundle, engine.export_weights()), info
