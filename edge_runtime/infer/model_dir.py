"""A model directory as the board reads it: model.json, its files checked against their sha256.

One reader for both ends: the host's check (host/model/validate.py) uses it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_runtime.bundle import sha256_file
from edge_runtime.errors import HiertrainError

MODEL_JSON = "model.json"
# The model directory's networks (host/model/assemble.py writes them; the board answers from
# edge.onnx, the inference host from tail.onnx).
EDGE_ONNX, TAIL_ONNX, FULL_ONNX = "edge.onnx", "tail.onnx", "full.onnx"
MODEL_FORMAT = "hiertrain-model"


class ModelDirError(HiertrainError):
    """A model directory that is incomplete, altered or not one; the message says which file."""


def read_model_dir(model_dir: Path, needs: tuple[str, ...] | None = None) -> dict[str, Any]:
    """model.json's content after checking its files against their sha256.

    `needs`: the files this side uses (the board: edge.onnx; the inference host: tail.onnx);
    each must be there. Other listed files may be left out (a board need not hold model.pt
    and full.onnx), but one that is there must match. None: every listed file must be there.
    """
    model_dir = Path(model_dir)
    path = model_dir / MODEL_JSON
    if not path.is_file():
        hint = ""
        if (model_dir / "edge.json").is_file():  # the board's own half (run --model-out)
            hint = (
                ": it holds the board's half (edge-runtime run --model-out); give the "
                "--model-out of hostctl serve, demo or bench, or of hostctl model"
            )
        raise ModelDirError(f"{model_dir}: no {MODEL_JSON}; not a model directory{hint}")
    try:
        description = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelDirError(f"{path}: not JSON ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != MODEL_FORMAT:
        raise ModelDirError(f"{path}: not a {MODEL_FORMAT} description")
    files = description.get("files", {})
    for name in needs or ():
        if name not in files:
            raise ModelDirError(f"{path}: lists no {name}")
    for name, digest in files.items():
        file = model_dir / name
        if not file.is_file():
            if needs is not None and name not in needs:
                continue  # not used on this side
            raise ModelDirError(f"{model_dir}: {name} is missing")
        if sha256_file(file) != digest:
            raise ModelDirError(
                f"{model_dir}: {name} was altered (sha256 differs from {MODEL_JSON})"
            )
    return description
