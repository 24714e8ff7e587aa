"""SPEC parsing, limit, and the errors a user sees for a spec the edge cannot use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.data import DATA_SPEC_HELP, DataError, load_dataset


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty"),
        ("mnist", "does not exist"),
        ("/no/such/file.npz", "does not exist"),
        ("npz:/no/such/file", "does not exist"),
        ("cifar10:", "needs a path"),
        ("synthetic:abc", "synthetic:N:SIZE"),
        ("synthetic:100:4", "SIZE in 8..256"),
        ("synthetic:1", "N >= 2"),
        ("synthetic:10:16:3", "synthetic:N:SIZE"),
    ],
)
def test_bad_specs_say_what_is_accepted(spec: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(spec)
    assert isinstance(info.value, ValueError)


def test_unknown_spec_lists_every_form() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("imagenet:/data")
    for form in ("synthetic:N:SIZE", "cifar10:DIR", "cifar10-bin:DIR", "npz:PATH", "digits:PATH"):
        assert form in str(info.value) and form in DATA_SPEC_HELP
    assert "folder:DIR" in DATA_SPEC_HELP


def test_directory_without_batches_points_to_folder_form(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"folder:{tmp_path}"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="data_batch_1"):
        load_dataset(f"cifar10:{tmp_path}")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": 0}, "limit"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset("synthetic:50:8", **kwargs)


def test_limit_is_a_seeded_subset_of_train() -> None:
    full = load_dataset("synthetic:200:8")
    a = load_dataset("synthetic:200:8", limit=30)
    b = load_dataset("synthetic:200:8", limit=30)
    assert len(a.x_train) == 30 and len(a.x_test) == len(full.x_test)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    rows = {bytes(x) for x in full.x_train}
    assert all(bytes(x) in rows for x in a.x_train)
    # Not simply the first 30: a shuffle picks them.
    assert not np.array_equal(a.x_train, full.x_train[:30])
    assert "limit: 30 of 160" in a.describe()
    assert len(load_dataset("synthetic:200:8", limit=10_000).x_train) == 160


def test_test_fraction_moves_the_cut() -> None:
    ds = load_dataset("synthetic:100:8", test_fraction=0.5)
    assert (len(ds.x_train), len(ds.x_test)) == (50, 50)
    assert len(load_dataset("synthetic:100:8", test_fraction=0.0).x_test) == 0


def test_package_imports_only_stdlib_and_numpy() -> None:
    code = (
        "import sys, edge_runtime.data as d; d.load_dataset('synthetic:20:8');"
        "bad = [m for m in ('torch', 'PIL', 'onnx', 'onnxruntime', 'host', 'models')"
        " if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == ""
