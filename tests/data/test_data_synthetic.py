"""The embedded default dataset: fast, reproducible, learnable, not trivial."""

from __future__ import annotations

import time

import numpy as np

from edge_runtime.data import Dataset, load_dataset


def _centroid_accuracy(
    train: np.ndarray, y: np.ndarray, test: np.ndarray, y_test: np.ndarray
) -> float:
    centroids = np.stack([train[y == k].mean(0) for k in range(10)])
    dist = (test**2).sum(1)[:, None] - 2 * test @ centroids.T + (centroids**2).sum(1)[None]
    return float((dist.argmin(1) == y_test).mean())


def _pixels(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32) / 255


def _spectrum(x: np.ndarray) -> np.ndarray:
    # Fourier magnitudes ignore where the shape is and the sign of its contrast; the shape
    # (the class) is what is left.
    x = x.astype(np.float32)
    mag = np.abs(np.fft.rfft2(x - x.mean(axis=(2, 3), keepdims=True))).sum(1)
    f = np.log1p(mag.reshape(len(x), -1))
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_default_spec_shape_and_speed() -> None:
    start = time.perf_counter()
    ds = load_dataset("synthetic")
    assert time.perf_counter() - start < 2.0
    assert (len(ds.x_train), len(ds.x_test)) == (2400, 600)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert np.bincount(ds.y_train, minlength=10).min() > 150  # balanced enough
    assert "synthetic" in ds.describe() and "seed 0" in ds.describe()


def test_reproducible_from_seed() -> None:
    a = load_dataset("synthetic:300:16", seed=1)
    b = load_dataset("synthetic:300:16", seed=1)
    c = load_dataset("synthetic:300:16", seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.input_shape == (3, 16, 16) and (len(a.x_train), len(a.x_test)) == (240, 60)


def test_learnable_but_not_trivial() -> None:
    ds: Dataset = load_dataset("synthetic:1500:32")
    args = (ds.y_train, ds.y_test)
    raw = _centroid_accuracy(_pixels(ds.x_train), args[0], _pixels(ds.x_test), args[1])
    shape = _centroid_accuracy(_spectrum(ds.x_train), args[0], _spectrum(ds.x_test), args[1])
    # Raw pixels say next to nothing (position and colour are random) ...
    assert raw < 0.25, raw
    # ... but a position-free view of the same pixels separates the classes clearly.
    assert shape > 0.5, shape
