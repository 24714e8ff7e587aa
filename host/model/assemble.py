"""From trained weights to a model directory: edge.onnx, tail.onnx, full.onnx, model.pt,
model.json. The torch modules are built by the one bundle-to-torch loader (models/rebuild.py)."""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import CODE_DIR, KEY_FILE, sha256_file
from edge_runtime.infer.model_dir import EDGE_ONNX, FULL_ONNX, MODEL_FORMAT, MODEL_JSON, TAIL_ONNX
from edge_runtime.statefile import write_failed
from models import EdgeNet, rebuild

MODEL_VERSION = 1
MODEL_PT = "model.pt"
OPSET = 17
# onnxruntime-training 1.19.2 (the board's ORT) reads IR <= 10.
MAX_IR_VERSION = 10
# Graph input and output names, the contract of `edge-runtime infer` and of users' code.
IO_NAMES = {
    EDGE_ONNX: (["image"], ["exit_logits", "activation"]),
    TAIL_ONNX: (["activation"], ["logits"]),
    FULL_ONNX: (["image"], ["logits", "exit_logits"]),
}


class FullNet(nn.Module):
    """Front, exit head and tail as one network: (final logits, exit logits)."""

    def __init__(self, edge: EdgeNet, tail: nn.Module) -> None:
        super().__init__()
        self.edge = edge
        self.tail = tail

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(final logits, exit logits), in this order."""
        exit_logits, activation = self.edge(x)
        return self.tail(activation), exit_logits


@dataclass
class ModelParts:
    """What a model directory is made of: the bundle's description, the trained weights of both
    halves (torch state-dict names), and what the run measured."""

    manifest: Mapping[str, Any]
    source_dir: Path  # where a user model's source lies (the bundle half's directory)
    edge_weights: Mapping[str, Any]  # front.* and exit_head.*: numpy arrays or tensors
    tail_weights: Mapping[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)  # normalisation, classes, input shape
    results: dict[str, Any] = field(default_factory=dict)  # accuracies, early-exit table

    def modules(self) -> tuple[EdgeNet, nn.Module, FullNet]:
        """The torch modules in eval mode; ManifestError if a weight does not fit."""
        edge = rebuild.edge_net_from_state(
            self.manifest, self.source_dir, _tensors(self.edge_weights)
        )
        tail = rebuild.tail_from_state(self.manifest, self.source_dir, _tensors(self.tail_weights))
        full = FullNet(edge, tail)
        full.eval()
        return edge, tail, full


def _tensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v))
        for k, v in state.items()
    }


def model_state(parts: ModelParts) -> dict[str, Any]:
    """model.pt's content: tensors and plain data only, so torch.load(weights_only=True) reads it
    and nothing pickled runs; `models.rebuild` turns `model_spec` back into the network."""
    m = parts.manifest
    return {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model": m["model"],
        "model_spec": json.loads(json.dumps(m["model_spec"])),
        "split": m["split"],
        "num_classes": m["num_classes"],
        "input_shape": list(m["input_shape"]),
        "activation_shape": list(m["activation"]["shape"]),
        "exit_head_width": m["edge"].get("exit_head_width"),
        "edge": _tensors(parts.edge_weights),
        "tail": _tensors(parts.tail_weights),
    }


def write_model(parts: ModelParts, out: Path) -> dict[str, Any]:
    """Write the five files into `out` (created); returns model.json's content.

    The ONNX files are exported from the same modules model.pt holds; `validate_model_dir`
    then checks one against the other.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    edge, tail, full = parts.modules()
    shape = tuple(parts.manifest["input_shape"])
    image = torch.zeros(2, *shape)
    with torch.no_grad():
        activation = edge(image)[1]
    for name, module, sample in (
        (EDGE_ONNX, edge, image),
        (TAIL_ONNX, tail, activation),
        (FULL_ONNX, full, image),
    ):
        _export_onnx(module, sample, out / name, *IO_NAMES[name])
    buffer = io.BytesIO()
    torch.save(model_state(parts), buffer)
    _write_atomic(out / MODEL_PT, buffer.getvalue())
    files = [EDGE_ONNX, TAIL_ONNX, FULL_ONNX, MODEL_PT]
    code = Path(parts.source_dir) / CODE_DIR
    spec = parts.manifest["model_spec"]
    if (spec.get("bundled_source") or spec.get("bundled_package")) and code.is_dir():
        # A user model's factory (and what it imports) rebuilds model.pt's network: its code
        # travels as files, hashed like the rest, never as pickled code.
        shutil.copytree(code, out / CODE_DIR, dirs_exist_ok=True)
        files += sorted(str(f.relative_to(out)) for f in (out / CODE_DIR).rglob("*") if f.is_file())
    m = parts.manifest
    meta = parts.meta
    description = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model": m["model"],
        "split": m["split"],
        "edge_blocks": m.get("edge_blocks"),
        "num_classes": m["num_classes"],
        "classes": meta.get("classes") or [str(i) for i in range(m["num_classes"])],
        "input_shape": list(m["input_shape"]),
        "activation_shape": list(m["activation"]["shape"]),
        # x = (pixel * pixel_scale - mean) / std per channel; null where the data was not known.
        "normalisation": meta.get("normalisation"),
        "data": meta.get("data"),
        "io": {k: {"inputs": v[0], "outputs": v[1]} for k, v in IO_NAMES.items()},
        "final_accuracy": parts.results.get("final_accuracy"),
        "edge_exit_accuracy": parts.results.get("edge_exit_accuracy"),
        "early_exit": parts.results.get("early_exit"),
        "trained_epochs": parts.results.get("epochs"),
        "files": {name: sha256_file(out / name) for name in files},
    }
    _write_atomic(out / MODEL_JSON, (json.dumps(description, indent=2) + "\n").encode())
    key = Path(parts.source_dir) / KEY_FILE
    if key.is_file():
        # The bundle's link key, so that `edge-runtime infer` and `hostctl serve --infer` on this
        # model authenticate as training did (--key-file overrides); a secret, not hashed.
        _write_atomic(out / KEY_FILE, key.read_bytes())
        (out / KEY_FILE).chmod(0o600)
    return description


def _export_onnx(
    module: nn.Module, sample: torch.Tensor, path: Path, inputs: list[str], outputs: list[str]
) -> None:
    """Inference export (eval mode, dynamic batch) with the TorchScript exporter, as the bundle's."""
    import onnx

    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about itself
        torch.onnx.export(
            module,
            (sample,),
            buffer,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    _write_atomic(path, model.SerializeToString())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        write_failed(
            path,
            exc,
            "the model",
            len(data),
            "free space there or give another --model-out / --out",
        )
