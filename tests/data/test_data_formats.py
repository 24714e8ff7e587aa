"""Every accepted SPEC form, loaded from real files written in that format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.data import DataError, load_dataset

SHARED_DIGITS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "digits.csv.gz"


@pytest.mark.parametrize("form", ["cifar10:{}", "{}"])
def test_cifar_pickle_batches(cifar_pickle_dir: Path, form: str) -> None:
    ds = load_dataset(form.format(cifar_pickle_dir))
    assert (len(ds.x_train), len(ds.x_test)) == (20, 3)
    assert ds.x_train.dtype == np.uint8 and ds.input_shape == (3, 32, 32)
    assert ds.num_classes == 10 and ds.classes[0] == "airplane"
    # Row layout is 1024 R, 1024 G, 1024 B, each row-major 32x32.
    with (cifar_pickle_dir / "data_batch_1").open("rb") as f:
        first = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(ds.x_train[0, 1, 0, :], first[b"data"][0, 1024:1056])
    np.testing.assert_array_equal(ds.y_train[:4], first[b"labels"])
    assert ds.y_train.dtype == np.int64


def test_cifar_pickle_refuses_foreign_objects(cifar_pickle_dir: Path) -> None:
    # A pickle that would call os.system must be refused before anything runs.
    import os

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("true",))

    (cifar_pickle_dir / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="not allowed"):
        load_dataset(f"cifar10:{cifar_pickle_dir}")


@pytest.mark.parametrize("form", ["cifar10-bin:{}", "{}"])
def test_cifar_binary_batches(cifar_bin_dir: Path, form: str) -> None:
    ds = load_dataset(form.format(cifar_bin_dir))
    assert (len(ds.x_train), len(ds.x_test)) == (10, 3)
    raw = np.fromfile(cifar_bin_dir / "data_batch_1.bin", np.uint8).reshape(-1, 3073)
    np.testing.assert_array_equal(ds.y_train[:2], raw[:, 0])
    np.testing.assert_array_equal(ds.x_train[1].reshape(-1), raw[1, 1:])
    assert ds.name.startswith("cifar10-bin")


def test_cifar_binary_truncated_record(cifar_bin_dir: Path) -> None:
    path = cifar_bin_dir / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="3073-byte"):
        load_dataset(f"cifar10-bin:{cifar_bin_dir}")


@pytest.mark.parametrize(
    ("shape", "to_nchw"),
    [
        ((12, 10, 9, 3), lambda x: x.transpose(0, 3, 1, 2)),  # channels-last
        ((12, 3, 10, 9), lambda x: x),  # channels-first
        ((12, 10, 9, 1), lambda x: x.transpose(0, 3, 1, 2)),  # grey, channels-last
        # RGBA and grey + alpha, channels-last: read as 10 channels of 9x4 (9x2) before.
        ((12, 10, 9, 4), lambda x: x.transpose(0, 3, 1, 2)),
        ((12, 10, 9, 2), lambda x: x.transpose(0, 3, 1, 2)),
        ((12, 4, 10, 9), lambda x: x),  # four channels first
        ((12, 3, 10, 3), lambda x: x),  # channels-first, 3 wide
        ((12, 10, 9), lambda x: x[:, None]),  # no channel axis
    ],
)
def test_npz_layouts(tmp_path: Path, shape: tuple[int, ...], to_nchw) -> None:
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    y = np.arange(12) % 4
    x_test, y_test = x[:5], y[:5]
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    ds = load_dataset(str(path))
    np.testing.assert_array_equal(ds.x_train, to_nchw(x))
    np.testing.assert_array_equal(ds.x_test, to_nchw(x_test))
    assert ds.num_classes == 4 and "x_test" in ds.describe()


def test_npz_float_pixels_and_holdout(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((50, 8, 8, 3)).astype(np.float32)
    path = tmp_path / "f.npz"
    np.savez(path, x=x, y=np.arange(50) % 5)
    ds = load_dataset(f"npz:{path}", test_fraction=0.2)
    assert (len(ds.x_train), len(ds.x_test)) == (40, 10)
    assert ds.x_train.dtype == np.uint8
    everything = np.concatenate([ds.x_train, ds.x_test]).reshape(50, -1)
    expected = np.rint(x.transpose(0, 3, 1, 2) * 255).astype(np.uint8).reshape(50, -1)
    assert sorted(map(bytes, everything)) == sorted(map(bytes, expected))
    # The hold-out does not move with the seed: test accuracy stays comparable across runs.
    other = load_dataset(f"npz:{path}", seed=5)
    np.testing.assert_array_equal(ds.x_test, other.x_test)
    assert "hold-out" in ds.describe()


def test_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="lacks array"):
        load_dataset(str(path))
    np.savez(path, x=np.full((2, 4, 4), 1.5), y=[0, 1])
    with pytest.raises(DataError, match=r"\[0, 1\], found 1.5\.\.1.5"):
        load_dataset(str(path))
    damaged = np.full((3, 4, 4), 0.5)
    damaged[2, 1, 1] = np.nan
    np.savez(path, x=damaged, y=[0, 1, 0])
    with pytest.raises(DataError, match=r"1 image\(s\) hold NaN or infinite pixels .*sample 2"):
        load_dataset(str(path))
    np.savez(path, x=np.array([None, 1], dtype=object), y=[0, 1])
    with pytest.raises(DataError, match="pickled"):
        load_dataset(str(path))
    np.savez(path, x=np.zeros((2, 4, 4), np.uint8), y=[0, 1], x_test=np.zeros((1, 4, 4)))
    with pytest.raises(DataError, match="both x_test and y_test"):
        load_dataset(str(path))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_dataset(str(tmp_path / "junk.npz"))


@pytest.mark.parametrize("name", ["d.csv.gz", "d.csv"])
def test_digits_csv(tmp_path: Path, name: str, write_digits) -> None:
    table = write_digits(tmp_path / name, 50)
    for spec in (str(tmp_path / name), f"digits:{tmp_path / name}"):
        ds = load_dataset(spec)
        assert (len(ds.x_train), len(ds.x_test)) == (40, 10)
        assert ds.input_shape == (1, 8, 8)
        np.testing.assert_array_equal(ds.y_test, table[40:, -1])
        expected = np.rint(table[0, :64] * 255 / 16).astype(np.uint8).reshape(8, 8)
        np.testing.assert_array_equal(ds.x_train[0, 0], expected)
        assert "first 40 rows train, last 10 rows test" in ds.describe()


def test_digits_wrong_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="65"):
        load_dataset(str(tmp_path / "d.csv"))


def test_digits_empty_or_truncated_file_is_one_error(tmp_path: Path, write_digits) -> None:
    """An empty CSV says so (not numpy's warning and a column count); a cut-off gzip names the
    file."""
    import gzip
    import warnings

    (tmp_path / "empty.csv").write_text("")
    with gzip.open(tmp_path / "empty.csv.gz", "wt") as f:
        f.write("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not leak
        for name in ("empty.csv", "empty.csv.gz"):
            with pytest.raises(DataError, match="holds no rows"):
                load_dataset(str(tmp_path / name))
    whole = tmp_path / "whole.csv.gz"
    write_digits(whole, 50)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.csv.gz is not a digits CSV"):
        load_dataset(str(cut))


@pytest.mark.skipif(
    not SHARED_DIGITS.exists(), reason=f"{SHARED_DIGITS} is absent (not in a clone)"
)
def test_real_digits_split() -> None:
    ds = load_dataset(str(SHARED_DIGITS))
    assert (len(ds.x_train), len(ds.x_test)) == (1437, 360)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert ds.x_train.max() == 255
    assert "first 1437 rows train, last 360 rows test" in ds.describe()


def test_cifar_pickle_written_by_old_numpy(cifar_pickle_dir: Path) -> None:
    # Official batches name numpy.core.multiarray (numpy 1.x); numpy 2 renamed it numpy._core.
    path = cifar_pickle_dir / "test_batch"
    path.write_bytes(path.read_bytes().replace(b"numpy._core.", b"numpy.core."))
    assert b"numpy.core.multiarray" in path.read_bytes()
    assert len(load_dataset(str(cifar_pickle_dir)).x_test) == 3


@pytest.mark.parametrize("pair", ["train", "test"])
def test_npz_images_and_labels_must_agree_in_count(tmp_path: Path, pair: str) -> None:
    path = tmp_path / "short.npz"
    x, y = np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2
    if pair == "train":
        np.savez(path, x=x, y=y[:7])
    else:
        np.savez(path, x=x, y=y, x_test=x[:4], y_test=y[:3])
    with pytest.raises(DataError, match="must match one to one"):
        load_dataset(f"npz:{path}")
