"""Bytes on the wire for one split: the messages a hierarchical run sends, framed as sent."""

from __future__ import annotations

import numpy as np

from edge_runtime.link.framing import encode_frame
from edge_runtime.link.messages import encode_message
from edge_runtime.train.messages import Batch, EpochEnd, EvalBatch, Grad


def _framed(msg: Batch | EpochEnd | Grad) -> int:
    # seq and ack at a mid-run size; they are fixed-width anyway.
    return len(encode_frame(encode_message(msg, seq=1000, ack=1000)))


def _activation(rows: int, shape: tuple[int, ...]) -> np.ndarray:
    # Random values: the codecs' sizes depend on the shape only; COBS adds ~1 byte in 254.
    return np.random.default_rng(0).standard_normal((rows, *shape)).astype(np.float32)


def batch_wire_bytes(
    activation_shape: tuple[int, ...], batch_size: int, codec: str, num_classes: int = 10
) -> int:
    """Framed size of one BATCH: header, labels, the activation under ``codec``, COBS, CRC."""
    labels = np.arange(batch_size, dtype=np.int64) % num_classes
    return _framed(Batch(0, 0, labels, _activation(batch_size, activation_shape), codec))


def eval_wire_bytes(
    activation_shape: tuple[int, ...], eval_batch_size: int, codec: str, num_classes: int = 10
) -> int:
    """Framed size of one full EVAL_BATCH."""
    labels = np.arange(eval_batch_size, dtype=np.int64) % num_classes
    return _framed(EvalBatch(0, 0, labels, _activation(eval_batch_size, activation_shape), codec))


def grad_wire_bytes(activation_shape: tuple[int, ...], batch_size: int) -> int:
    """Framed size of one GRAD (split learning): the activation's gradient, fp32."""
    return _framed(Grad(0, 0, _activation(batch_size, activation_shape)))


def epoch_end_bytes(test_samples: int, eval_batch_size: int = 128) -> int:
    """Framed size of an EPOCH_END: it carries the exit's confidence and hit per test sample."""
    metrics = {
        "exit_accuracy": 0.8123,
        "train_exit_accuracy": 0.7891,
        "exit_confidence": [0.8765] * test_samples,
        "exit_correct": [1] * test_samples,
        "eval_batch_size": eval_batch_size,
        "last": False,
    }
    return _framed(EpochEnd(0, metrics))
