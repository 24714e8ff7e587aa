"""Turning a --data SPEC string into a Dataset."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import arrays, cifar10, digits, draws, folder, synthetic
from .dataset import Dataset
from .errors import DataError

DEFAULT_SPEC = "synthetic"

DATA_SPEC_HELP = (
    "SPEC is one of: 'synthetic' (the default: 3000 generated 3x32x32 images of 10 kinds of "
    "coloured shape, made from the seed; 'synthetic:N' or 'synthetic:N:SIZE' for N images of "
    "SIZExSIZE, e.g. synthetic:2000:32); 'cifar10:DIR' (CIFAR-10 python batches data_batch_1..5 "
    "and test_batch) or 'cifar10-bin:DIR' (data_batch_1.bin..5.bin and test_batch.bin), or just "
    "DIR holding either; 'npz:PATH' or PATH.npz (arrays x and y, optionally x_test and y_test; "
    "x as N,H,W or N,H,W,C or N,C,H,W, uint8 or float in [0,1]; no pickled objects); "
    "'digits:PATH' or PATH.csv or PATH.csv.gz (UCI optical digits: per row 64 pixels 0..16 of "
    "an 8x8 image, then the label; first 80% of rows train, the rest test); 'folder:DIR' or "
    "'folder:DIR:SIZE' (DIR/<class>/<image>, needs Pillow; SIZE resizes to SIZExSIZE; labels "
    "by the bundle's class names if it has them, else by sorted folder name). "
    "Where the source has no test split, a fixed test_fraction of it is held out."
)

# (x_train, y_train, x_test, y_test, num_classes or None, how it was split, class names)
_Loaded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int | None, str, tuple[str, ...]]


def _n_train(n: int, test_fraction: float) -> int:
    # The epsilon keeps 3000 * 0.8 at 2400 despite float rounding; 1797 * 0.8 gives 1437.
    return math.floor(n * (1.0 - test_fraction) + 1e-9)


def _holdout(
    x: np.ndarray, y: np.ndarray, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Hold out a fixed random test_fraction, the same for every seed so runs compare."""
    n = len(y)
    order = draws.permutation(n, 0, draws.HOLDOUT)
    cut = _n_train(n, test_fraction)
    train, test = np.sort(order[:cut]), np.sort(order[cut:])
    how = f"test: fixed random {test_fraction:.0%} hold-out (same for every seed)"
    return x[train], y[train], x[test], y[test], how


def _synthetic(arg: str, test_fraction: float, seed: int) -> _Loaded:
    parts = arg.split(":") if arg else []
    try:
        n = int(parts[0]) if parts else synthetic.DEFAULT_SAMPLES
        size = int(parts[1]) if len(parts) > 1 else synthetic.DEFAULT_SIZE
        if len(parts) > 2:
            raise ValueError
    except ValueError:
        raise DataError(
            f"'synthetic:{arg}' is not synthetic, synthetic:N or synthetic:N:SIZE with integers"
        ) from None
    if n < 2 or not synthetic.MIN_SIZE <= size <= synthetic.MAX_SIZE:
        raise DataError(
            f"synthetic:N:SIZE needs N >= 2 and SIZE in {synthetic.MIN_SIZE}..{synthetic.MAX_SIZE}, "
            f"got N={n}, SIZE={size}"
        )
    x, y = synthetic.generate(n, size, seed)
    cut = _n_train(n, test_fraction)
    how = f"generated from seed {seed}; first {cut} train, last {n - cut} test"
    return x[:cut], y[:cut], x[cut:], y[cut:], len(synthetic.CLASSES), how, synthetic.CLASSES


def _existing(arg: str, form: str) -> Path:
    if not arg:
        raise DataError(f"'{form}' needs a path after the colon. {DATA_SPEC_HELP}")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist (from '{form}:{arg}'). {DATA_SPEC_HELP}")
    return path


def _cifar(arg: str, binary: bool) -> _Loaded:
    form = "cifar10-bin" if binary else "cifar10"
    x, y, x_test, y_test = cifar10.load(_existing(arg, form), binary=binary)
    how = "official CIFAR-10 train/test batches"
    return x, y, x_test, y_test, len(cifar10.CLASSES), how, cifar10.CLASSES


def _npz(arg: str, test_fraction: float) -> _Loaded:
    path = _existing(arg, "npz")
    x, y, x_test, y_test = arrays.load_npz(path)
    if x_test is None or y_test is None:
        x, y, x_test, y_test, how = _holdout(x, np.asarray(y), test_fraction)
    else:
        how = "test: the file's x_test, y_test"
    return x, y, x_test, y_test, None, how, ()


def _digits(arg: str, test_fraction: float) -> _Loaded:
    x, y = digits.load_csv(_existing(arg, "digits"))
    cut = _n_train(len(y), test_fraction)
    how = f"first {cut} rows train, last {len(y) - cut} rows test"
    return x[:cut], y[:cut], x[cut:], y[cut:], 10, how, tuple(str(d) for d in range(10))


def _folder(arg: str, test_fraction: float) -> _Loaded:
    directory, size = arg, None
    head, _, tail = arg.rpartition(":")
    if head and tail.isdigit():
        directory, size = head, int(tail)
        if size < 1:
            raise DataError(f"folder:DIR:SIZE needs SIZE >= 1, got {size}")
    x, y, classes = folder.load_folder(_existing(directory, "folder"), size)
    x, y, x_test, y_test, how = _holdout(x, y, test_fraction)
    return x, y, x_test, y_test, len(classes), how, classes


def _readers(seed: int, test_fraction: float) -> dict[str, Callable[[str], _Loaded]]:
    return {
        "synthetic": lambda a: _synthetic(a, test_fraction, seed),
        "cifar10": lambda a: _cifar(a, binary=False),
        "cifar10-bin": lambda a: _cifar(a, binary=True),
        "npz": lambda a: _npz(a, test_fraction),
        "digits": lambda a: _digits(a, test_fraction),
        "folder": lambda a: _folder(a, test_fraction),
    }


def _resolve(spec: str) -> tuple[str, str]:
    """(form, argument) for a spec, detecting the form of a bare path."""
    form, colon, arg = spec.partition(":")
    if form in ("synthetic", "cifar10", "cifar10-bin", "npz", "digits", "folder"):
        return form, arg
    path = Path(spec).expanduser()
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz", spec
    if name.endswith((".csv", ".csv.gz")):
        return "digits", spec
    if path.is_dir():
        detected = cifar10.detect(path)
        if detected:
            return detected, spec
        raise DataError(
            f"{path} is a directory without CIFAR-10 batches; for class subfolders of images "
            f"use folder:{spec}. {DATA_SPEC_HELP}"
        )
    what = "does not exist" if not path.exists() else "is not a recognised dataset"
    raise DataError(f"'{spec}': {what}. {DATA_SPEC_HELP}")


def load_dataset(
    spec: str = DEFAULT_SPEC,
    *,
    seed: int = 0,
    limit: int | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """Load the dataset that ``spec`` names (see DATA_SPEC_HELP) into memory.

    ``seed`` drives the synthetic generator and the ``limit`` subset; ``limit`` keeps that many
    train samples, chosen by a shuffle fixed by the seed; ``test_fraction`` is the share held
    out where the source has no test split of its own (synthetic, digits, npz without x_test,
    folder).
    """
    spec = spec.strip()
    if not spec:
        raise DataError(f"the data spec is empty. {DATA_SPEC_HELP}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1 train samples (or None for all), got {limit}")
    form, arg = _resolve(spec)
    x, y, x_test, y_test, num_classes, how, classes = _readers(seed, test_fraction)[form](arg)
    if limit is not None and limit < len(y):
        keep = np.sort(draws.permutation(len(y), seed, draws.SUBSET)[:limit])
        how += f"; limit: {limit} of {len(y)} train samples (seed {seed})"
        x, y = x[keep], np.asarray(y)[keep]
    name = form if form == "synthetic" else f"{form}:{Path(arg).name or arg}"
    return Dataset.from_arrays(
        name, x, y, x_test, y_test, num_classes=num_classes, split=how, classes=classes
    )
