"""The board's own half of the trained model: `edge-runtime run --model-out DIR`.

The engine exports front + exit as an inference model (ORT's export for inferencing with the
ort engine: no torch, no onnx), beside a description of how to feed it. The whole model (tail
included) is the host's to write (`hostctl serve --model-out`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from edge_runtime.bundle import sha256_file
from edge_runtime.engines import Engine
from edge_runtime.infer.model_dir import EDGE_ONNX
from edge_runtime.statefile import DiskFull

EDGE_JSON = "edge.json"  # the board's own half: edge.onnx and this
# Free bytes under which a failed export is put down to a full disk: ORT reports a failed
# write only as "Protobuf serialization failed", and a write that filled the disk leaves
# less than a block or two.
_FULL_BELOW = 64 * 1024


def write_edge_model(
    engine: Engine, meta: dict[str, Any], report: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Write DIR/edge.onnx and DIR/edge.json; returns the description."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        engine.export_inference(out / EDGE_ONNX)
    except Exception as exc:
        _raise_if_disk_full(exc, out / EDGE_ONNX)
        raise
    description = {
        "format": "hiertrain-edge-model",
        "version": 1,
        "engine": engine.name,
        "model": report.get("model"),
        "split": report.get("split"),
        # The engine's graph names: the exported eval graph keeps the training graph's.
        "io": {EDGE_ONNX: {"inputs": ["input"], "outputs": ["logits", "activation"]}},
        **{k: meta.get(k) for k in ("classes", "input_shape", "normalisation", "data")},
        "edge_exit_accuracy": report.get("edge_exit_accuracy"),
        "early_exit": report.get("early_exit"),
        "files": {EDGE_ONNX: sha256_file(out / EDGE_ONNX)},
    }
    tmp = out / (EDGE_JSON + ".tmp")
    try:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
        os.replace(tmp, out / EDGE_JSON)
    except OSError as exc:
        _raise_if_disk_full(exc, out / EDGE_JSON)
        raise
    return description


def _raise_if_disk_full(exc: BaseException, path: Path) -> None:
    """DiskFull naming `path` if a failed write of it was the disk filling up (its half-written
    .tmp removed either way); otherwise return, for the caller to re-raise."""
    tmp = path.with_name(path.name + ".tmp")
    free = shutil.disk_usage(path.parent).free
    tmp.unlink(missing_ok=True)
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or free < _FULL_BELOW:
        raise DiskFull(
            path,
            f"disk full writing the edge model ({free} bytes free there)",
            "free space there or give another --model-out",
        ) from None
