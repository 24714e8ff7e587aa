"""A model directory as the board reads it: model.json, every file checked against its sha256.

One reader for both ends: the host's check (host/model/validate.py) uses it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_runtime.bundle import sha256_file
from edge_runtime.errors import HiertrainError

MODEL_JSON = "model.json"
MODEL_FORMAT = "hiertrain-model"


class ModelDirError(HiertrainError):
    """A model directory that is incomplete, altered or not one; the message says which file."""


def read_model_dir(model_dir: Path) -> dict[str, Any]:
    """model.json's content after checking every file it lists against its sha256."""
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
    for name, digest in description.get("files", {}).items():
        file = model_dir / name
        if not file.is_file():
            raise ModelDirError(f"{model_dir}: {name} is missing")
        if sha256_file(file) != digest:
            raise ModelDirError(
                f"{model_dir}: {name} was altered (sha256 differs from {MODEL_JSON})"
            )
    return description
