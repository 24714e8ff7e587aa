"""Turning user arrays (.npz) into the uint8 NCHW layout the edge stores."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError

# At most this many channels on the last axis reads as channels-last (grey, grey + alpha, RGB,
# RGBA); a channel axis that long is never an image side.
_MAX_LAST_CHANNELS = 4


def to_nchw_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """Bring images to uint8 (N, C, H, W).

    Layouts: (N, H, W) gets one channel; (N, H, W, C) is taken as channels-last when its last
    dim is at most 4 (grey, grey + alpha, RGB, RGBA) and its second is more; anything else 4-D
    is (N, C, H, W). Float pixels must be in [0, 1] and are scaled to 0..255; integer pixels
    must already be in 0..255.
    """
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[3] <= _MAX_LAST_CHANNELS < x.shape[1]:
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{what} must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)) if x.size else []
        if len(bad):
            raise DataError(
                f"{what}: {len(bad)} image(s) hold NaN or infinite pixels (the first: sample "
                f"{bad[0]}); drop or repair them"
            )
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise DataError(
                f"{what}: float pixels must be in [0, 1], found {x.min():.4g}..{x.max():.4g}; "
                "scale them or store uint8"
            )
        return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))
    if x.dtype.kind in "iub":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{what}: integer pixels must be in 0..255, got {x.min()}..{x.max()}")
        return np.ascontiguousarray(x.astype(np.uint8))
    raise DataError(
        f"{what}: pixels must be uint8, integers 0..255 or floats in [0, 1], got {x.dtype}"
    )


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read ``x``, ``y`` and the optional ``x_test``, ``y_test`` from an .npz (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"{path} is not a readable .npz without pickled objects ({exc}); save it with "
            "numpy.savez(path, x=images, y=labels[, x_test=..., y_test=...])"
        ) from exc
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks array(s) {', '.join(missing)}; it has {sorted(arrays)}. "
            "Expected x (images), y (labels) and optionally x_test, y_test"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both x_test and y_test, or neither")
    for images, labels in (("x", "y"), ("x_test", "y_test")):
        if images in arrays and len(arrays[images]) != len(arrays[labels]):
            raise DataError(
                f"{path}: {images} holds {len(arrays[images])} images but {labels} "
                f"{len(arrays[labels])} labels; they must match one to one"
            )
    x = to_nchw_uint8(arrays["x"], f"{path}: x")
    x_test = arrays.get("x_test")
    if x_test is not None:
        x_test = to_nchw_uint8(x_test, f"{path}: x_test")
    return x, arrays["y"], x_test, arrays.get("y_test")
