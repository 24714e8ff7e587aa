"""Where a model's parts come from: a live run (the edge's MODEL_WEIGHTS and the host's tail in
memory) or checkpoints (the edge's engine checkpoint and the host's tail checkpoint)."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import torch

from edge_runtime.bundle import Bundle
from edge_runtime.errors import UsageFault
from edge_runtime.statefile import StateError, read_state
from host.cloud.edge_state import RESTORE, STATE_KIND, STATE_VERSION, SUFFIX, EdgeState
from host.model.assemble import ModelParts, write_model
from host.model.validate import ModelCheckFailed, validate_model_dir

RESULT_KEYS = ("final_accuracy", "edge_exit_accuracy", "early_exit")


def _results(epochs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The figures of the last epoch the host scored."""
    if not epochs:
        return {}
    last = max(epochs)
    return {**{k: epochs[last].get(k) for k in RESULT_KEYS}, "epochs": last + 1}


def parts_from_state(bundle: Bundle, state: EdgeState) -> ModelParts:
    """A finished run's model: the edge's weights as it sent them, the host's tail as trained."""
    received = state.edge_model()
    if received is None:
        raise ModelCheckFailed(
            f"edge {state.edge_id} sent no trained model (it stopped before the end of its "
            "run); assemble one from checkpoints with `hostctl model`"
        )
    weights, meta = received
    tail = {k: v.detach().clone() for k, v in state.trainer.tail.state_dict().items()}
    return ModelParts(
        bundle.manifest, bundle.side_dir("cloud"), weights, tail, meta, _results(state.epochs)
    )


def read_edge_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Front + exit weights from an engine checkpoint: the torch engine's, or the ort engine's
    (an ORT CheckpointState, read with onnxruntime-training)."""
    path = Path(path)
    if not path.is_file():
        raise ModelCheckFailed(f"--edge-checkpoint {path} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    # A file that is not torch's zip fails in the unpickler with whatever its bytes provoke
    # (a JSON file: KeyError; a CSV: IndexError).
    except (
        pickle.UnpicklingError,
        RuntimeError,
        ValueError,
        EOFError,
        OSError,
        KeyError,
        IndexError,
    ):
        saved = None  # not a torch file: try ORT's format
    if isinstance(saved, dict) and "net" in saved:
        return {k: v.numpy() for k, v in saved["net"].items()}
    from edge_runtime.engines.ort_import import training_api

    try:
        state = training_api().CheckpointState.load_checkpoint(str(path))
    except RuntimeError as exc:
        why = str(exc).strip().rsplit(" : ", 1)[-1]  # ORT's text after its source location
        raise ModelCheckFailed(
            f"{path}: neither a torch nor an ORT engine checkpoint ({why}); give engine.ckpt "
            "from the edge's --work-dir"
        ) from None
    return {name: np.array(param.data) for name, param in state.parameters}


def read_edge_meta(edge_checkpoint: Path) -> dict[str, Any]:
    """Normalisation and classes the edge recorded in progress.json beside its checkpoint ({} if
    there is none: the model is written without them)."""
    progress = Path(edge_checkpoint).with_name("progress.json")
    if not progress.is_file():
        return {}
    payload = read_state(progress, kind="edge-progress", version=1, way_out="--fresh")
    return dict(json.loads(payload).get("extra", {}).get("model_meta", {}))


def tail_checkpoint(host_state: Path, edge_id: str | None) -> Path:
    """The one tail checkpoint in `host_state` (of `edge_id` where there are several)."""
    if not Path(host_state).is_dir():
        raise ModelCheckFailed(
            f"--host-state {host_state} is not a directory; give the --state-dir of "
            "`hostctl serve` (runs/cloud by default)"
        )
    paths = sorted(Path(host_state).glob(f"*{SUFFIX}"))
    if edge_id is not None:
        paths = [p for p in paths if unquote(p.stem.split("+")[0]) == edge_id]
    if len(paths) != 1:
        found = ", ".join(p.name for p in paths) or "none"
        raise ModelCheckFailed(
            f"--host-state {host_state}: need one tail checkpoint{'' if edge_id is None else f' of {edge_id}'}, found {found}; "
            "name the edge with --edge-id"
        )
    return paths[0]


def parts_from_checkpoints(
    bundle: Bundle, edge_checkpoint: Path, host_state: Path, edge_id: str | None = None
) -> ModelParts:
    """The model at the last checkpoints of both sides (after a crash, or a lost board)."""
    path = tail_checkpoint(host_state, edge_id)
    try:
        payload = read_state(path, kind=STATE_KIND, version=STATE_VERSION, way_out=RESTORE)
    except StateError as exc:
        raise ModelCheckFailed(str(exc)) from None
    saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    epochs = {int(e): v for e, v in saved["meta"]["epochs"].items()}
    return ModelParts(
        bundle.manifest,
        bundle.side_dir("cloud"),
        read_edge_checkpoint(edge_checkpoint),
        saved["trainer"]["tail"],
        read_edge_meta(edge_checkpoint),
        _results(epochs),
    )


def model_out(
    parts: ModelParts,
    out: Path,
    samples: np.ndarray | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the model directory and validate it; ModelCheckFailed (exit 1) if a file is off."""
    description = write_model(parts, out)
    validate_model_dir(out, samples, say)
    say(f"model written to {out}")
    return description


def run_models_out(
    bundle: Bundle,
    states: list[EdgeState],
    out: Path,
    samples: np.ndarray | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """`--model-out DIR` at a run's end: one edge's model in DIR, several in DIR/<edge id>."""
    done = [s for s in states if s.edge_model() is not None] or states
    results = []
    for state in done:
        target = Path(out) if len(done) == 1 else Path(out) / state.edge_id
        results.append(model_out(parts_from_state(bundle, state), target, samples, say))
    return results


def averaged_model_out(
    bundle: Bundle,
    states: list[EdgeState],
    front: dict[str, np.ndarray],
    out: Path,
    samples: np.ndarray | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`--model-out DIR` of a fleet that averaged its fronts: one model in DIR, the averaged
    front + exit on the shared tail (every edge ended training on that front). Normalisation,
    classes and accuracies are those of the first edge by id that sent its model (edges of one
    fleet normalise alike only if their data do: each edge's statistics are its own split's)."""
    ordered = sorted(states, key=lambda s: s.edge_id)
    first = next((s for s in ordered if s.edge_model() is not None), None)
    if first is None:
        raise ModelCheckFailed("no edge of the fleet sent its model: nothing to take meta from")
    _, meta = first.edge_model()
    tail = {k: v.detach().clone() for k, v in first.trainer.tail.state_dict().items()}
    parts = ModelParts(
        bundle.manifest, bundle.side_dir("cloud"), front, tail, meta, _results(first.epochs)
    )
    return model_out(parts, Path(out), samples, say)


def held_out_samples(
    data_spec: str, count: int = 64, input_shape: list[int] | None = None
) -> np.ndarray:
    """The first `count` test samples of a data set, normalised as training saw them;
    UsageFault when they are not of `input_shape` (the bundle's), rather than torch's error."""
    from edge_runtime.data import load_dataset

    data = load_dataset(data_spec, seed=0)
    if input_shape is not None and data.input_shape != tuple(input_shape):
        shape = "x".join(map(str, data.input_shape))
        raise UsageFault(
            f"--data {data_spec}: its samples are {shape}, the model takes "
            f"{'x'.join(map(str, input_shape))}"
        )
    x = data.x_test if len(data.x_test) else data.x_train
    return data.normalise(x[:count])
