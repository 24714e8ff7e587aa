"""Batches for training and evaluation, reproducible per (seed, epoch, batch index).

A restarted edge must rebuild exactly batch k of epoch e, because the host has already
consumed some batches (ids are (edge, epoch, index)) and must not train the same one twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from . import draws
from .dataset import Dataset
from .errors import DataError

Split = Literal["train", "test"]

# Random-crop padding; only applied to images at least _CROP_MIN_SIDE on both sides, where a
# 4-pixel shift is a small jitter rather than a large part of the image.
_PAD = 4
_CROP_MIN_SIDE = 16


def _split(ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "train":
        return ds.x_train, ds.y_train
    if split == "test":
        return ds.x_test, ds.y_test
    raise DataError(f"split must be 'train' or 'test', got {split!r}")


def num_batches(ds: Dataset, split: Split, batch_size: int, drop_last: bool = False) -> int:
    """How many batches ``batches`` yields for this split and batch size."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    n = len(_split(ds, split)[1])
    return n // batch_size if drop_last else -(-n // batch_size)


def augment_batch(x: np.ndarray, *, seed: int, epoch: int, index: int) -> np.ndarray:
    """Random crop from a 4-pixel zero padding (images >= 16x16 only) and horizontal flip.

    ``x`` is uint8 NCHW; the draws depend only on (seed, epoch, index) and the sample's position
    in the batch. One gather does crop and flip for the whole batch.
    """
    n, c, h, w = x.shape
    bits = draws.raw_bits(n, seed, epoch, index, draws.AUGMENT)
    flip = (bits & 1).astype(bool)
    cols = np.where(flip[:, None], np.arange(w)[::-1], np.arange(w))
    rows = np.broadcast_to(np.arange(h), (n, h))
    if h >= _CROP_MIN_SIDE and w >= _CROP_MIN_SIDE:
        span = 2 * _PAD + 1
        dy = ((bits >> 8) % span).astype(np.intp)
        dx = ((bits >> 24) % span).astype(np.intp)
        x = np.pad(x, ((0, 0), (0, 0), (_PAD, _PAD), (_PAD, _PAD)))
        rows = rows + dy[:, None]
        cols = cols + dx[:, None]
    return x[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def batches(
    ds: Dataset,
    split: Split,
    batch_size: int,
    *,
    epoch: int,
    seed: int = 0,
    augment: bool = False,
    drop_last: bool = False,
    start: int = 0,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (index, x float32 normalised NCHW, y int64) for one epoch of ``split``.

    Train order is a shuffle fixed by (seed, epoch); test order is as stored. ``augment`` is
    for the train split only. ``start`` skips to batch ``start``, so a restarted edge resumes
    mid-epoch with the same batches it would have made.
    """
    x_all, y_all = _split(ds, split)
    total = num_batches(ds, split, batch_size, drop_last)
    if augment and split != "train":
        raise DataError("augment is for the train split only; evaluate the test split without it")
    if epoch < 0 or seed < 0 or start < 0:
        raise DataError(f"epoch, seed and start must be >= 0, got {epoch}, {seed}, {start}")
    order = draws.permutation(len(y_all), seed, epoch, draws.SHUFFLE) if split == "train" else None
    return _iterate(ds, x_all, y_all, order, batch_size, range(start, total), seed, epoch, augment)


def _iterate(
    ds: Dataset,
    x_all: np.ndarray,
    y_all: np.ndarray,
    order: np.ndarray | None,
    batch_size: int,
    indices: range,
    seed: int,
    epoch: int,
    augment: bool,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    # A separate generator so that batches() checks its arguments when called, not at first next().
    for index in indices:
        window = slice(index * batch_size, (index + 1) * batch_size)
        if order is None:
            x, y = x_all[window], y_all[window]
        else:
            picked = order[window]
            x, y = x_all[picked], y_all[picked]
        if augment:
            x = augment_batch(x, seed=seed, epoch=epoch, index=index)
        yield index, ds.normalise(x), y.copy()
