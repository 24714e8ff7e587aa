"""Writers for real files in each accepted format, at small sizes."""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _cifar_rows(n: int, start: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(start)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [(start + i) % 10 for i in range(n)]
    return data, labels


@pytest.fixture
def cifar_pickle_dir(tmp_path: Path) -> Path:
    """data_batch_1..5 (4 images each) and test_batch (3 images), pickled like the official ones."""
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for i in range(1, 6):
        data, labels = _cifar_rows(4, 10 * i)
        batch = {b"batch_label": b"training batch", b"labels": labels, b"data": data}
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    data, labels = _cifar_rows(3, 99)
    (d / "test_batch").write_bytes(pickle.dumps({b"labels": labels, b"data": data}, protocol=2))
    return d


@pytest.fixture
def cifar_bin_dir(tmp_path: Path) -> Path:
    """data_batch_1..5.bin (2 records each) and test_batch.bin (3 records)."""
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    for name, n, start in [(f"data_batch_{i}.bin", 2, i) for i in range(1, 6)] + [
        ("test_batch.bin", 3, 7)
    ]:
        data, labels = _cifar_rows(n, start)
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (d / name).write_bytes(records.tobytes())
    return d


def _write_digits(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    table = np.concatenate(
        [rng.integers(0, 17, (rows, 64)), (np.arange(rows) % 10)[:, None]], axis=1
    )
    text = "\n".join(",".join(map(str, row)) for row in table) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return table


@pytest.fixture
def write_digits() -> Callable[..., np.ndarray]:
    """write_digits(path, rows): a digits CSV (gzip when the name ends .gz); returns the table."""
    return _write_digits
