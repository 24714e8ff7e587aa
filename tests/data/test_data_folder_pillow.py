"""folder:DIR with the real Pillow: the image modes a user's folder holds side by side.

Pillow's convert("L") and convert("RGB") clip a 16-bit greyscale PNG (mode I;16) at 255, so
every such image read as plain white: two classes of 16-bit scans were the same all-255
images and trained on nothing, silently. 16-bit pixels are now scaled to 8 bits (v / 257).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.data import DataError, load_dataset

Image = pytest.importorskip("PIL.Image")


def _grey16(path: Path, value: int, size: tuple[int, int] = (6, 5)) -> None:
    Image.fromarray(np.full(size[::-1], value, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    for name, value in (("dark", 12850), ("light", 51400)):
        (tmp_path / name).mkdir()
        for i in range(5):
            _grey16(tmp_path / name / f"{i}.png", value)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.input_shape == (1, 5, 6)
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        for image, label in zip(x, y, strict=True):
            assert np.all(image == (50 if label == 0 else 200))


def test_a_mixed_folder_reads_every_mode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(rgb[:, :, 0], "L").save(tmp_path / "a" / "grey.png")
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), "RGBA").save(tmp_path / "a" / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "a" / "palette.png")
    Image.fromarray(rgb).save(tmp_path / "b" / "photo.jpg")
    _grey16(tmp_path / "b" / "scan.png", 25700, size=(30, 12))
    Image.fromarray(rgb).save(tmp_path / "b" / "wide.bmp")
    data = load_dataset(f"folder:{tmp_path}:8", test_fraction=0.0)
    assert data.input_shape == (3, 8, 8) and len(data.x_train) == 6
    assert sorted(data.y_train.tolist()) == [0, 0, 0, 1, 1, 1]
    # The 16-bit scan (sorted 4th: a/grey, a/palette, a/rgba, b/photo, b/scan, b/wide).
    assert np.all(data.x_train[4] == 100)


def test_float_images_are_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((4, 4), 0.5, np.float32), "F").save(tmp_path / "a" / "f.tif")
    with pytest.raises(DataError, match=r"f\.tif: 32-bit float pixels .* npz"):
        load_dataset(f"folder:{tmp_path}")


def test_hidden_folders_and_files_are_not_classes_or_samples(tmp_path: Path) -> None:
    """A notebook's .ipynb_checkpoints (or macOS's ._ files) beside the class folders: it was
    class 0, shifting every label by one against the same images without it."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(
                tmp_path / name / f"{i}.png"
            )
    (tmp_path / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    data = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    assert data.classes == ("cat", "dog")
    assert sorted(data.y_train.tolist()) == [0] * 5 + [1] * 5
