"""folder:DIR with a stand-in for Pillow (the board venv has none), and without Pillow."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.data import DataError, load_dataset


class _FakeImage:
    """The slice of PIL.Image.Image that the folder reader uses, over a numpy array."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.mode = "L" if a.ndim == 2 else "RGB"
        self.size = (a.shape[1], a.shape[0])

    def __enter__(self) -> _FakeImage:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def load(self) -> None:
        return None

    def copy(self) -> _FakeImage:
        return _FakeImage(self.a.copy())

    def convert(self, mode: str) -> _FakeImage:
        if mode == self.mode:
            return self
        return _FakeImage(np.repeat(self.a[..., None], 3, axis=2))

    def resize(self, size: tuple[int, int]) -> _FakeImage:
        rows = np.arange(size[1]) * self.a.shape[0] // size[1]
        cols = np.arange(size[0]) * self.a.shape[1] // size[0]
        return _FakeImage(self.a[rows][:, cols])

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return self.a if dtype is None else self.a.astype(dtype)


@pytest.fixture
def fake_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    image = types.SimpleNamespace(open=lambda p: _FakeImage(np.load(Path(p), allow_pickle=False)))
    monkeypatch.setitem(sys.modules, "PIL", types.SimpleNamespace(Image=image))


def _write(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # .png name, numpy payload: the fake Image.open reads it
        np.save(f, a)


def test_class_folders(tmp_path: Path, fake_pillow: None) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("cat", 6), ("dog", 4)):
        for i in range(n):
            _write(tmp_path / name / f"{i}.png", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.2)
    assert ds.classes == ("cat", "dog") and ds.num_classes == 2
    assert ds.input_shape == (3, 5, 7)
    assert (len(ds.x_train), len(ds.x_test)) == (8, 2)
    assert sorted(np.concatenate([ds.y_train, ds.y_test])) == [0] * 6 + [1] * 4


def test_sizes_must_agree_unless_resized(tmp_path: Path, fake_pillow: None) -> None:
    _write(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "b" / "0.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(DataError, match=r"differ in size.*:SIZE"):
        load_dataset(f"folder:{tmp_path}")
    ds = load_dataset(f"folder:{tmp_path}:8", test_fraction=0.0)
    assert ds.input_shape == (1, 8, 8) and len(ds.x_train) == 2


def test_empty_folder(tmp_path: Path, fake_pillow: None) -> None:
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path}")


def test_without_pillow_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "cat" / "a.png", np.zeros((2, 2), np.uint8))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match="install it"):
        load_dataset(f"folder:{tmp_path}")
