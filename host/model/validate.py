"""Check a model directory: every file is there with the sha256 model.json records, and each
ONNX file gives what the torch modules rebuilt from model.pt give, on the same samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_runtime.errors import HiertrainError
from edge_runtime.infer.model_dir import ModelDirError
from edge_runtime.infer.model_dir import read_model_dir as read_checked
from host.model.assemble import (
    EDGE_ONNX,
    FULL_ONNX,
    IO_NAMES,
    MODEL_FORMAT,
    MODEL_PT,
    TAIL_ONNX,
    ModelParts,
)
from models import ManifestError, ModelSpecError

# ORT and torch order float sums differently: agreement to this fraction of the outputs' scale
# is the same network; a different weight moves logits by whole units.
TOLERANCE = 1e-3


class ModelCheckFailed(HiertrainError):
    """A model directory that is incomplete, altered, or whose ONNX files disagree with torch."""


@dataclass
class Check:
    """One ONNX file against torch: the largest absolute difference over every output."""

    file: str
    max_diff: float
    ok: bool


def read_model_dir(model_dir: Path) -> dict[str, Any]:
    """model.json, after checking every file it lists against its sha256 (one-line errors)."""
    try:
        return read_checked(model_dir)
    except ModelDirError as exc:
        raise ModelCheckFailed(str(exc)) from None


def parts_from_model_pt(path: Path, source_dir: Path | None = None) -> ModelParts:
    """The ModelParts model.pt holds (read with weights_only=True: nothing pickled runs)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelCheckFailed(f"{path}: cannot be read as a model state ({exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise ModelCheckFailed(f"{path}: not a {MODEL_FORMAT} state (model.pt of a run)")
    manifest = {
        "model": saved["model"],
        "model_spec": saved["model_spec"],
        "split": saved["split"],
        "num_classes": saved["num_classes"],
        "input_shape": saved["input_shape"],
        "activation": {"shape": saved["activation_shape"]},
        "edge": {"exit_head_width": saved["exit_head_width"]},
    }
    return ModelParts(manifest, source_dir or path.parent, saved["edge"], saved["tail"])


def validate_model_dir(
    model_dir: Path,
    samples: np.ndarray | None = None,
    say: Callable[[str], None] = print,
) -> list[Check]:
    """Check files and hashes, then each ONNX file against torch on `samples` (normalised
    inputs; default: 16 seeded Gaussian inputs). Prints ✓/✗ lines; ModelCheckFailed if any is off."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    description = read_model_dir(model_dir)
    try:
        edge, tail, full = parts_from_model_pt(model_dir / MODEL_PT).modules()
    except (ManifestError, ModelSpecError) as exc:
        raise ModelCheckFailed(f"{model_dir / MODEL_PT}: {exc}") from None
    if samples is None:
        rng = np.random.default_rng(0)
        samples = rng.standard_normal((16, *description["input_shape"])).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(samples, np.float32))
    with torch.no_grad():
        edge.eval()
        exit_logits, activation = edge(x)
        references = {
            EDGE_ONNX: (x, [exit_logits, activation]),
            TAIL_ONNX: (activation, [tail(activation)]),
            FULL_ONNX: (x, list(full(x))),
        }
    checks = []
    for name, (inp, expected) in references.items():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(model_dir / name), opts, providers=["CPUExecutionProvider"]
            )
            got = session.run(IO_NAMES[name][1], {IO_NAMES[name][0][0]: inp.numpy()})
        except Exception as exc:  # noqa: BLE001 - ORT raises its own classes; any is a ✗
            raise ModelCheckFailed(
                f"{model_dir / name}: onnxruntime cannot run it ({exc})"
            ) from None
        diff = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))
        scale = max(1.0, max(float(np.abs(e.numpy()).max()) for e in expected))
        check = Check(name, diff, diff <= TOLERANCE * scale)
        say(f"{'✓' if check.ok else '✗'} {name}: max |onnx - torch| {diff:.2e} on {len(x)} samples")
        checks.append(check)
    bad = [c.file for c in checks if not c.ok]
    if bad:
        raise ModelCheckFailed(f"{model_dir}: {', '.join(bad)} disagree with model.pt's weights")
    return checks
