"""The UCI optical digits CSV: 64 pixels (0..16, an 8x8 image row by row) and a label per row."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError

_SIDE = 8
_MAX_PIXEL = 16


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every row: x uint8 (N, 1, 8, 8) rescaled from 0..16 to 0..255, y int64 0..9."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        # An empty file is numpy's warning and an empty table: said below as one line instead.
        with opener(path, "rt") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path} is not a digits CSV ({exc}); expected rows of 64 integer pixels 0..16 "
            "and a label, comma separated, no header"
        ) from exc
    if table.size == 0:
        raise DataError(
            f"{path} holds no rows; a digits CSV has one row per image: 64 pixels 0..16 of an "
            "8x8 image, then the label"
        )
    if table.shape[1] != _SIDE * _SIDE + 1:
        raise DataError(
            f"{path} has {table.shape[1]} columns; a digits CSV has 65 "
            "(64 pixels 0..16 of an 8x8 image, then the label). Other images (an MNIST CSV, "
            "say) go in an .npz: numpy.savez(path, x=images, y=labels), then --data npz:PATH"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > _MAX_PIXEL:
        raise DataError(f"{path}: pixels must be 0..16, found {pixels.min()}..{pixels.max()}")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: labels must be digits 0..9, found {labels.min()}..{labels.max()}")
    # Round to nearest: 16 -> 255, 8 -> 128.
    x = (pixels * 255 + _MAX_PIXEL // 2) // _MAX_PIXEL
    return x.astype(np.uint8).reshape(-1, 1, _SIDE, _SIDE), labels
