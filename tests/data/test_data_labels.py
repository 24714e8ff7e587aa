"""Labels that are not class indices 0..K-1 (a user's 1..10, or sparse ids) against a bundle.

The data's class count is its largest label + 1, so labels 1..10 read as 11 classes and ids
{3, 7, 17, 42, 99, 1000} as 1001. The refusal used to say only "export with --num-classes
1001": a 1001-way classifier for six classes. It now names the labels found and the mapping
that fits the model, as well as the class count that would take them as they are.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import check_data_fits
from edge_runtime.data import load_dataset
from edge_runtime.errors import UsageFault

MANIFEST_6 = {"input_shape": [1, 8, 8], "num_classes": 6}


def _npz(path: Path, labels: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8), y=labels)
    return path


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            np.tile(np.array([3, 7, 17, 42, 99, 1000]), 10),
            "has labels 3..1000 (6 distinct values) but the bundle's model takes class indices "
            "0..5: map the labels to 0..5 (numpy.unique(y, return_inverse=True)) or export "
            "with --num-classes 1001",
        ),
        (
            np.tile(np.arange(1, 7), 10),
            "has labels 1..6 (6 distinct values) but the bundle's model takes class indices "
            "0..5: map the labels to 0..5 (numpy.unique(y, return_inverse=True)) or export "
            "with --num-classes 7",
        ),
    ],
)
def test_labels_that_are_not_indices_name_the_mapping(tmp_path, labels, expected) -> None:
    data = load_dataset(str(_npz(tmp_path / "d.npz", labels)))
    with pytest.raises(UsageFault) as caught:
        check_data_fits(data, MANIFEST_6)
    assert str(caught.value) == f"data npz:d.npz {expected}"


def test_more_distinct_labels_than_classes_keep_the_class_count_line(tmp_path) -> None:
    data = load_dataset(str(_npz(tmp_path / "d.npz", np.tile(np.arange(8), 10))))
    with pytest.raises(UsageFault) as caught:
        check_data_fits(data, MANIFEST_6)
    assert str(caught.value) == (
        "data npz:d.npz has 8 classes but the bundle's model has 6: export with --num-classes 8"
    )


def test_edge_runtime_run_refuses_sparse_labels_in_one_line(exported, tmp_path) -> None:
    bundle = exported("smallcnn", 1, input_shape=(1, 8, 8), num_classes=6)
    data = _npz(tmp_path / "ids.npz", np.tile(np.array([3, 7, 17, 42, 99, 1000]), 10))
    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge"),
         "--connect", "socket://127.0.0.1:9", "--data", str(data), "--work-dir",
         str(tmp_path / "w")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "map the labels to 0..5" in lines[0], out.stderr
