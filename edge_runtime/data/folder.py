"""A directory of class-named subfolders of images (needs Pillow, imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError(
            "folder:DIR needs Pillow to decode images; install it on the board "
            "(pip install pillow) or convert the images to an .npz (x, y) on the host"
        ) from exc
    return Image


def load_folder(
    directory: Path, size: int | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read DIR/<class>/<image> into uint8 NCHW with labels in sorted class-name order
    (hidden folders and files left out).

    Without ``size`` every image must already have the same size; with it, each image is
    resized to size x size. All-grayscale folders give one channel, anything else RGB.
    """
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; folder:DIR takes DIR/<class>/<image>")
    # Hidden entries are tools' (.ipynb_checkpoints, macOS's ._name files), never the user's
    # classes or images: a hidden folder would be class 0 and shift every label by one.
    classes = tuple(
        sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    files = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((directory / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    ]
    if not files:
        raise DataError(
            f"{directory} has no images in class subfolders; expected DIR/<class>/<image> with "
            f"suffix one of {', '.join(IMAGE_SUFFIXES)}"
        )
    image_module = _pillow()
    images = []
    for path, _ in files:
        try:
            with image_module.open(path) as im:
                im.load()
                images.append(_eight_bit(im.copy(), path, image_module))
        except OSError as exc:
            raise DataError(f"{path} is not a readable image ({exc}); remove or fix it") from exc
    grey = all(im.mode in ("1", "L") for im in images)
    mode = "L" if grey else "RGB"
    if size is None:
        size_of = {path: im.size for (path, _), im in zip(files, images, strict=True)}
        first = files[0][0]
        odd = next((p for p, s in size_of.items() if s != size_of[first]), None)
        if odd is not None:
            raise DataError(
                f"images differ in size ({first} is {_wxh(size_of[first])}, {odd} is "
                f"{_wxh(size_of[odd])}); use folder:{directory}:SIZE to resize all to SIZExSIZE"
            )
    arrays = []
    for im in images:
        im = im.convert(mode)
        if size is not None and im.size != (size, size):
            im = im.resize((size, size))
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    labels = np.array([label for _, label in files], dtype=np.int64)
    return np.stack(arrays), labels, classes


def _eight_bit(im: Any, path: Path, image_module: Any) -> Any:
    """A 16-bit greyscale image (modes I;16*, I) as 8-bit L, v / 257: Pillow's own convert
    clips it at 255, which made every 16-bit scan plain white. Float pixels have no range
    Pillow knows, so they are refused rather than guessed."""
    if im.mode == "F":
        raise DataError(
            f"{path}: 32-bit float pixels have no fixed range; save the images as 8- or 16-bit, "
            "or give the arrays as an npz (float pixels in [0, 1])"
        )
    if im.mode == "I" or im.mode.startswith("I;16"):
        wide = np.asarray(im, dtype=np.float64)
        return image_module.fromarray(np.rint(np.clip(wide, 0, 65535) / 257).astype(np.uint8))
    return im


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
