"""CIFAR-10 readers: the official python-pickle batches and the binary batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .errors import DataError

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS

# What a CIFAR-10 python batch may reference when unpickled: numpy's array reconstruction and
# _codecs.encode (how Python 3 protocol-2 pickles spell bytes). Anything else is not the
# official format and is refused, not executed.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"{module}.{name} is not allowed in a CIFAR-10 python batch; "
                "use the official cifar-10-batches-py files or the binary version (cifar10-bin:DIR)"
            )
        return super().find_class(module, name)


def detect(directory: Path) -> str | None:
    """'cifar10' or 'cifar10-bin' when ``directory`` holds that format's batches, else None."""
    if (directory / "data_batch_1").is_file():
        return "cifar10"
    if (directory / "data_batch_1.bin").is_file():
        return "cifar10-bin"
    return None


def _batch_files(directory: Path, suffix: str) -> tuple[list[Path], Path]:
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; give the folder holding the batches")
    train = [
        directory / (b + suffix) for b in TRAIN_BATCHES if (directory / (b + suffix)).is_file()
    ]
    test = directory / (TEST_BATCH + suffix)
    if not train or not test.is_file():
        raise DataError(
            f"{directory} has no CIFAR-10 batches: expected data_batch_1{suffix}.."
            f"data_batch_5{suffix} and {TEST_BATCH}{suffix}"
        )
    return train, test


def _read_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            # The official batches were written by Python 2: keys and strings are bytes.
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is not a readable CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 python batch: it needs b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(
            f"{path}: b'data' must be uint8 (N, {_PIXELS}), got {data.dtype} {data.shape}"
        )
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise DataError(
            f"{path} is {raw.size} bytes, not a whole number of {_RECORD}-byte CIFAR-10 records "
            "(1 label byte + 3072 pixel bytes)"
        )
    records = raw.reshape(-1, _RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def load(directory: Path, *, binary: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read all train batches present (in order) and the test batch: x uint8 NCHW, y int64."""
    read = _read_binary if binary else _read_pickle
    train, test = _batch_files(directory, ".bin" if binary else "")
    parts = [read(p) for p in train]
    x_test, y_test = read(test)
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    for y, path in ((y_train, directory), (y_test, test)):
        if len(y) and int(y.max()) >= len(CLASSES):
            raise DataError(f"{path}: label {int(y.max())} is not a CIFAR-10 class (0..9)")
    return x_train, y_train, x_test, y_test
