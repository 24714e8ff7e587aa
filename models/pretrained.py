"""Starting from pretrained weights (`hostctl export --weights FILE`).

FILE is either the `model.pt` of an earlier run (front + exit head under "edge", the tail under
"tail") or a plain state dict of the whole model, keyed as the model's blocks name their modules
(block "layer1.0" -> "layer1_0.<param>"; see `SplitModel`). It is read with
torch.load(weights_only=True): tensors and plain data, never pickled code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

from models.errors import ManifestError
from models.exit_head import EdgeNet
from models.rebuild import load_weights

MODEL_FORMAT = "hiertrain-model"  # model.pt's "format" (host/model/assemble.py writes it)


def read_pretrained(path: Path) -> dict:
    """The file's dict; ManifestError (one line) if it is absent or not a state dict."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"--weights {path} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises pickle, zip and runtime errors alike
        raise ManifestError(f"--weights {path}: {_why_unreadable(path, exc)}") from None
    if not isinstance(saved, dict):
        raise ManifestError(f"--weights {path}: holds a {type(saved).__name__}, not a state dict")
    return saved


def _why_unreadable(path: Path, exc: Exception) -> str:
    """One line on why torch.load(weights_only=True) refused `path`."""
    if not zipfile.is_zipfile(path):
        return "not a file torch.save wrote (no zip archive): a damaged or foreign file"
    text = str(exc)
    if "Weights only load failed" in text:
        # The archive holds objects, not tensors: most often a whole model, torch.save(model).
        return (
            "holds pickled objects, not only tensors (a whole model saved with "
            "torch.save(model)?); save model.state_dict() instead"
        )
    # torch's own message runs to several lines of advice; its first says what failed.
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"not a torch state dict ({first})"


def load_pretrained(path: Path, edge: EdgeNet, tail: nn.Module) -> str:
    """Put the weights of `path` into the edge network and the tail; returns what was loaded.

    A whole-model state dict has no exit head: the head keeps its fresh initialisation.
    """
    saved = read_pretrained(path)
    loaded = "front and tail (whole-model state dict; fresh exit head)"
    if saved.get("format") == MODEL_FORMAT:
        if _names(saved["edge"]) == _names(edge.state_dict()):  # the same split: the head too
            load_weights(edge, saved["edge"], what=f"--weights {path}: edge weights")
            load_weights(tail, saved["tail"], what=f"--weights {path}: tail weights")
            return "front, exit head and tail (model.pt)"
        # Another split of the same network: its blocks are the whole model, cut elsewhere;
        # the exit head, made for the old cut's activation, cannot move with it.
        saved = {
            **{
                k.removeprefix("front."): v
                for k, v in saved["edge"].items()
                if k.startswith("front.")
            },
            **saved["tail"],
        }
        loaded = "front and tail (model.pt of another split; fresh exit head)"
    front_keys = set(edge.front.state_dict())
    front = {k: v for k, v in saved.items() if k in front_keys}
    rest = {k: v for k, v in saved.items() if k not in front_keys}
    load_weights(edge.front, front, what=f"--weights {path}: front weights")
    load_weights(tail, rest, what=f"--weights {path}: tail weights")
    return loaded


def _names(state: dict) -> set[str]:
    """A state dict's entry names but BatchNorm's counters, which model.pt does not keep."""
    return {k for k in state if not k.endswith("num_batches_tracked")}
