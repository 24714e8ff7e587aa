"""The in-memory dataset the edge trains on: raw uint8 NCHW splits plus train statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .errors import DataError

# A channel that is constant on the train split has std 0; dividing by 1 keeps it at zero.
_MIN_STD = 1e-6
# Samples per block when computing statistics: bounds the float64 scratch memory.
_STATS_BLOCK = 512


@dataclass
class Dataset:
    """Train and test splits as stored (uint8, NCHW) with per-channel train statistics.

    ``mean`` and ``std`` are per channel, on pixels scaled to [0, 1], computed on the train
    split only so that nothing about the test split leaks into training.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    split: str = ""
    classes: tuple[str, ...] = ()

    @classmethod
    def from_arrays(
        cls,
        name: str,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        *,
        num_classes: int | None = None,
        split: str = "",
        classes: tuple[str, ...] = (),
    ) -> Dataset:
        """Validate uint8 NCHW splits and integer labels, and compute the train statistics.

        ``num_classes`` defaults to the largest label plus one.
        """
        x_train = _check_images(x_train, f"{name}: train images")
        x_test = _check_images(x_test, f"{name}: test images")
        y_train = _check_labels(y_train, len(x_train), f"{name}: train labels")
        y_test = _check_labels(y_test, len(x_test), f"{name}: test labels")
        if len(x_train) == 0:
            raise DataError(f"{name}: the train split is empty; give a dataset with samples")
        if len(x_test) and x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{name}: train images are {_shape(x_train)} but test images are "
                f"{_shape(x_test)}; both splits must have the same shape"
            )
        top = int(max(y_train.max(), y_test.max() if len(y_test) else 0)) + 1
        if num_classes is None:
            num_classes = top
        elif top > num_classes:
            raise DataError(
                f"{name}: label {top - 1} is out of range for {num_classes} classes; "
                f"labels must be 0..{num_classes - 1}"
            )
        mean, std = channel_stats(x_train)
        return cls(
            name=name,
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            num_classes=int(num_classes),
            mean=mean,
            std=std,
            split=split,
            classes=tuple(classes),
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def normalise(self, x_uint8: np.ndarray) -> np.ndarray:
        """Scale uint8 pixels to [0, 1], then standardise per channel with the train statistics.

        Accepts one sample (C, H, W) or a batch (N, C, H, W); returns float32 of the same shape.
        """
        if x_uint8.dtype != np.uint8:
            raise DataError(
                f"normalise takes raw uint8 pixels, got {x_uint8.dtype}; pass the arrays as "
                "stored in the Dataset (normalising twice would be wrong silently)"
            )
        if x_uint8.ndim not in (3, 4) or x_uint8.shape[-3:] != self.input_shape:
            raise DataError(
                f"normalise expects (N, {', '.join(map(str, self.input_shape))}) or one sample "
                f"{self.input_shape}, got {x_uint8.shape}"
            )
        scale = (1.0 / (255.0 * self.std)).astype(np.float32)[:, None, None]
        shift = (self.mean / self.std).astype(np.float32)[:, None, None]
        return x_uint8.astype(np.float32) * scale - shift

    def named_as(self, names: Sequence[str]) -> Dataset:
        """This data labelled by position in ``names`` (a bundle's class list), matched by
        class name: a folder that lacks some classes keeps every other class's number. A
        DataError names a class that ``names`` lacks."""
        index = {name: i for i, name in enumerate(names)}
        unknown = [c for c in self.classes if c not in index]
        if unknown:
            known = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise DataError(
                f"{self.name}: class {unknown[0]!r} is not one of the bundle's classes "
                f"({known}): rename or remove it, or export with --classes naming it"
            )
        to_bundle = np.array([index[c] for c in self.classes], dtype=np.int64)
        return replace(
            self,
            y_train=to_bundle[self.y_train],
            y_test=to_bundle[self.y_test],
            num_classes=len(names),
            classes=tuple(names),
        )

    def one_class_note(self) -> str | None:
        """A warning when every train sample is of one class (None otherwise): both exits can
        only learn to answer that class. Not an error: a smoke test may mean it."""
        present = np.unique(self.y_train)
        if len(present) != 1:
            return None
        label = int(present[0])
        name = self.classes[label] if label < len(self.classes) else str(label)
        return (
            f"{self.name}: every train sample is of one class, {name!r} (label {label}): the "
            "model can only learn to answer it (fine for a smoke test, not for training)"
        )

    def describe(self) -> str:
        """One line: name, split sizes, sample shape, classes and how the split was made."""
        c, h, w = self.input_shape
        line = (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
            f"{c}x{h}x{w} uint8, {self.num_classes} classes"
        )
        return f"{line}; {self.split}" if self.split else line


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float32) of uint8 NCHW images scaled to [0, 1].

    Works through the samples in blocks so a large split never needs a full float copy.
    """
    c = x.shape[1]
    total = np.zeros(c, np.float64)
    squares = np.zeros(c, np.float64)
    for start in range(0, len(x), _STATS_BLOCK):
        block = x[start : start + _STATS_BLOCK].astype(np.float64)
        total += block.sum(axis=(0, 2, 3))
        squares += np.square(block).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0)) / 255.0
    std = np.where(std < _MIN_STD, 1.0, std)
    return (mean / 255.0).astype(np.float32), std.astype(np.float32)


def _shape(x: np.ndarray) -> str:
    return "x".join(map(str, x.shape[1:]))


def _check_images(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(f"{what} must be uint8 pixels 0..255, got {x.dtype}")
    if x.ndim != 4 or min(x.shape[1:]) < 1:
        raise DataError(f"{what} must be (N, C, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x)


def _check_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what} must be a vector of {n} class indices, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{what} must be integer class indices, got {y.dtype}")
    if n and int(y.min()) < 0:
        raise DataError(f"{what} must be >= 0, found {int(y.min())}")
    return y.astype(np.int64)
