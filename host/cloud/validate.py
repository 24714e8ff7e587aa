"""Every message from an edge is checked against the bundle before the host uses it.

An authenticated edge can still send nonsense (a bug, a damaged board, a hostile holder of the
bundle's key): labels out of range, a tensor of another shape, a body of the wrong type. The
host refuses such a message: it is not trained on, not acknowledged, and the session ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.link.messages import Malformed
from edge_runtime.model_messages import ModelWeights
from edge_runtime.train.messages import Batch, EpochEnd, RawBatch, UploadDone


class BadMessage(ValueError):
    """A message that an authenticated edge sent but the host cannot use; says why."""


def check_message(msg: Any, manifest: dict[str, Any]) -> None:
    """Raise BadMessage unless `msg` fits the bundle (shapes, dtypes, label range, body types)."""
    classes = int(manifest["num_classes"])
    if isinstance(msg, Malformed):  # the link could not decode it: the body is not its type's
        raise BadMessage(msg.error)
    if isinstance(msg, Batch):  # and EVAL_BATCH
        what = f"{type(msg).__name__} ({msg.epoch}, {msg.index})"
        _check_labels(msg.labels, len(msg.tensor), classes, what)
        expected = tuple(manifest["activation"]["shape"])
        if tuple(msg.tensor.shape[1:]) != expected:
            raise BadMessage(
                f"{what}: activation of shape {_shape(msg.tensor.shape[1:])} per sample, "
                f"the bundle's cut gives {_shape(expected)}"
            )
        if not np.isfinite(msg.tensor).all():
            raise BadMessage(f"{what}: the activation holds NaN or Inf")
    elif isinstance(msg, RawBatch):
        what = f"RawBatch ({msg.raw_set}, {msg.index})"
        _check_labels(msg.labels, len(msg.data), classes, what)
        expected = tuple(manifest["input_shape"])
        if msg.data.ndim != 4 or tuple(msg.data.shape[1:]) != expected:
            raise BadMessage(
                f"{what}: inputs of shape {_shape(msg.data.shape[1:])}, expected {_shape(expected)}"
            )
    elif isinstance(msg, EpochEnd):
        _check_epoch_end(msg)
    elif isinstance(msg, ModelWeights):
        # Whether the names and shapes fit the model is checked when the model is assembled
        # (models/rebuild.py); a NaN would pass that and poison every answer.
        for name, value in msg.tensors.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise BadMessage(f"ModelWeights: {name} holds NaN or Inf")
    elif isinstance(msg, UploadDone):
        for key in ("epochs", "batch_size", "num_classes"):  # the types were checked on decode
            if getattr(msg, key) < 1:
                raise BadMessage(f"UploadDone: {key} must be a positive integer")


def _check_labels(labels: np.ndarray, n: int, classes: int, what: str) -> None:
    if labels.ndim != 1 or len(labels) != n or n == 0:
        raise BadMessage(f"{what}: {labels.shape} labels for {n} samples")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise BadMessage(f"{what}: labels {low}..{high} outside 0..{classes - 1}")


def _check_epoch_end(msg: EpochEnd) -> None:
    body = msg.metrics  # a JSON object: the link checked that on decode
    what = f"EpochEnd {msg.epoch}"
    for key in ("exit_confidence", "exit_correct"):
        values = body.get(key, [])
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise BadMessage(f"{what}: {key} must be a list of numbers")
    for key in ("exit_accuracy", "train_exit_accuracy"):
        value = body.get(key)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise BadMessage(f"{what}: {key} must be a fraction in 0..1 or null")
    if not isinstance(body.get("last", False), bool):
        raise BadMessage(f"{what}: last must be true or false")
    for key in ("eval_batch_size",):
        value = body.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadMessage(f"{what}: {key} must be a positive integer")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"
