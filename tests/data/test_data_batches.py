"""Batches: reproducible per (seed, epoch, index), normalised, augmentation as specified."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.data import (
    DataError,
    Dataset,
    augment_batch,
    batches,
    load_dataset,
    num_batches,
)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset("synthetic:500:32", seed=3)


def _all(it) -> list[tuple[int, np.ndarray, np.ndarray]]:
    return list(it)


def test_train_epoch_is_a_fixed_shuffle(ds: Dataset) -> None:
    a = _all(batches(ds, "train", 64, epoch=2, seed=7))
    b = _all(batches(ds, "train", 64, epoch=2, seed=7))
    assert [i for i, _, _ in a] == list(range(num_batches(ds, "train", 64)))
    for (i, xa, ya), (j, xb, yb) in zip(a, b, strict=True):
        assert i == j
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    labels = np.concatenate([y for _, _, y in a])
    assert sorted(labels) == sorted(ds.y_train)  # every sample once
    assert not np.array_equal(labels, ds.y_train)  # and shuffled
    other_epoch = np.concatenate([y for _, _, y in batches(ds, "train", 64, epoch=3, seed=7)])
    other_seed = np.concatenate([y for _, _, y in batches(ds, "train", 64, epoch=2, seed=8)])
    assert not np.array_equal(labels, other_epoch)
    assert not np.array_equal(labels, other_seed)


def test_restart_mid_epoch_rebuilds_the_same_batch(ds: Dataset) -> None:
    full = _all(batches(ds, "train", 50, epoch=1, seed=0, augment=True))
    resumed = _all(batches(ds, "train", 50, epoch=1, seed=0, augment=True, start=5))
    assert [i for i, _, _ in resumed] == list(range(5, len(full)))
    for (_, x, y), (_, x2, y2) in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)


def test_test_split_in_order_without_shuffle(ds: Dataset) -> None:
    got = _all(batches(ds, "test", 32, epoch=9, seed=4))
    np.testing.assert_array_equal(np.concatenate([y for _, _, y in got]), ds.y_test)
    np.testing.assert_array_equal(got[0][1], ds.normalise(ds.x_test[:32]))


def test_sizes_and_drop_last(ds: Dataset) -> None:
    n = len(ds.y_train)  # 400
    assert num_batches(ds, "train", 64) == 7
    assert num_batches(ds, "train", 64, drop_last=True) == 6
    kept = _all(batches(ds, "train", 64, epoch=0, drop_last=True))
    assert len(kept) == 6 and all(len(y) == 64 for _, _, y in kept)
    last = _all(batches(ds, "train", 64, epoch=0))[-1]
    assert len(last[2]) == n - 6 * 64
    x, y = last[1], last[2]
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape[1:] == (3, 32, 32)


def test_normalisation_on_train_is_standard(ds: Dataset) -> None:
    x = ds.normalise(ds.x_train)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0.0, atol=1e-3)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1.0, atol=1e-3)
    # Scale to [0, 1] first, then standardise per channel.
    manual = (ds.x_test[:3].astype(np.float32) / 255 - ds.mean[:, None, None]) / ds.std[
        :, None, None
    ]
    np.testing.assert_allclose(ds.normalise(ds.x_test[:3]), manual, rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="uint8"):
        ds.normalise(x[:2])


def test_augmentation_is_a_crop_and_flip_keyed_by_batch(ds: Dataset) -> None:
    x = ds.x_train[:64]
    a = augment_batch(x, seed=1, epoch=2, index=3)
    np.testing.assert_array_equal(a, augment_batch(x, seed=1, epoch=2, index=3))
    for key in ({"seed": 2, "epoch": 2, "index": 3}, {"seed": 1, "epoch": 3, "index": 3}):
        assert not np.array_equal(a, augment_batch(x, **key))
    assert not np.array_equal(a, augment_batch(x, seed=1, epoch=2, index=4))
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    flips = 0
    for k in range(len(x)):
        windows = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if np.array_equal(
                a[k], (lambda w: w[..., ::-1] if f else w)(padded[k, :, dy : dy + 32, dx : dx + 32])
            )
        ]
        assert windows, f"sample {k} is not a padded crop (maybe flipped) of the original"
        flips += windows[0][2]
    assert 10 < flips < 54  # about half are flipped


def test_augmentation_small_images_only_flip() -> None:
    x = np.random.default_rng(0).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    a = augment_batch(x, seed=0, epoch=0, index=0)
    for k in range(len(x)):
        assert np.array_equal(a[k], x[k]) or np.array_equal(a[k], x[k, :, :, ::-1])


def test_batch_argument_errors(ds: Dataset) -> None:
    with pytest.raises(DataError, match="'train' or 'test'"):
        batches(ds, "val", 8, epoch=0)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="batch_size"):
        batches(ds, "train", 0, epoch=0)
    with pytest.raises(DataError, match="train split only"):
        batches(ds, "test", 8, epoch=0, augment=True)
    with pytest.raises(DataError, match=">= 0"):
        batches(ds, "train", 8, epoch=-1)
