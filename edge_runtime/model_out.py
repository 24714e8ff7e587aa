"""The board's own half of the trained model: `edge-runtime run --model-out DIR`.

The engine exports front + exit as an inference model (ORT's export for inferencing with the
ort engine: no torch, no onnx), beside a description of how to feed it. The whole model (tail
included) is the host's to write (`hostctl serve --model-out`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge_runtime.bundle import sha256_file
from edge_runtime.engines import Engine

EDGE_ONNX, EDGE_JSON = "edge.onnx", "edge.json"


def write_edge_model(
    engine: Engine, meta: dict[str, Any], report: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Write DIR/edge.onnx and DIR/edge.json; returns the description."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine.export_inference(out / EDGE_ONNX)
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
    tmp.write_text(json.dumps(description, indent=2) + "\n")
    os.replace(tmp, out / EDGE_JSON)
    return description
