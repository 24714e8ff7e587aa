"""The one bundle-to-torch loader: the networks a bundle manifest describes, with their weights.

It takes plain manifest data and the directory of the bundle half being loaded (where an
export put the user model's source), so the board's torch engine, the host's tail trainer and
the whole-network trainer build their modules the same way. Weights are plain .npz state
dicts: nothing pickled is loaded. File names are the caller's: `models` knows no bundle layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.build import model_from_spec
from models.errors import ManifestError
from models.exit_head import EdgeNet, build_exit_head
from models.split_model import SplitModel

Manifest = Mapping[str, Any]


def split_model(manifest: Manifest, source_dir: Path) -> SplitModel:
    """The whole model the manifest describes, freshly initialised."""
    return model_from_spec(manifest["model_spec"], source_dir)


def edge_net(manifest: Manifest, source_dir: Path, weights: Path) -> EdgeNet:
    """Front + exit head (what the board trains), with the weights in `weights` (.npz)."""
    return edge_net_from_state(manifest, source_dir, read_weights(weights))


def edge_net_from_state(
    manifest: Manifest, source_dir: Path, state: Mapping[str, torch.Tensor]
) -> EdgeNet:
    """Front + exit head with the weights of a state dict (e.g. what a trained edge sent)."""
    head = build_exit_head(
        tuple(manifest["activation"]["shape"]),
        manifest["num_classes"],
        manifest["edge"].get("exit_head_width"),
    )
    net = EdgeNet(split_model(manifest, source_dir).front(manifest["split"]), head)
    load_weights(net, dict(state), what="edge weights")
    return net


def tail(manifest: Manifest, source_dir: Path, weights: Path) -> nn.Sequential:
    """The tail (blocks split.. and the classifier), with the weights in `weights` (.npz)."""
    return tail_from_state(manifest, source_dir, read_weights(weights))


def tail_from_state(
    manifest: Manifest, source_dir: Path, state: Mapping[str, torch.Tensor]
) -> nn.Sequential:
    """The tail with the weights of a state dict (e.g. the host's tail checkpoint)."""
    net = split_model(manifest, source_dir).tail(manifest["split"])
    load_weights(net, dict(state), what="tail weights")
    return net


def whole_net(
    manifest: Manifest, source_dir: Path, edge_weights: Path, tail_weights: Path
) -> nn.Sequential:
    """Front + tail as one network (no exit head): what the comparison modes train."""
    model = split_model(manifest, source_dir)
    front, back = model.front(manifest["split"]), model.tail(manifest["split"])
    prefix = "front."  # the edge weights also hold the exit head, which this network lacks
    state = read_weights(edge_weights)
    load_weights(
        front,
        {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)},
        what="front weights",
    )
    load_weights(back, read_weights(tail_weights), what="tail weights")
    return nn.Sequential(front, back)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a plain .npz file (as export writes it)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}
    except FileNotFoundError:
        raise ManifestError(f"weights file {path} does not exist") from None


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load every parameter and buffer of `module`; ManifestError naming what does not fit."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # torch's report of a shape that differs
        raise ManifestError(f"{what} do not fit the model: {' '.join(str(exc).split())}") from None
    if missing or unexpected:
        raise ManifestError(
            f"{what} do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
