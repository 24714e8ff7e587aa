"""The embedded default dataset: ten kinds of coloured shape on noisy backgrounds.

Generated from the seed, so no file ships and no download happens. Position, scale, aspect,
colours and noise vary per sample; only the shape says the class. A small CNN learns it;
a linear model on raw pixels does not get far.
"""

from __future__ import annotations

import numpy as np

CLASSES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "horizontal bar",
    "vertical bar",
    "diagonal",
    "diamond",
    "two dots",
)
DEFAULT_SAMPLES = 3000
DEFAULT_SIZE = 32
MIN_SIZE = 8
MAX_SIZE = 256

# Samples per generation block: bounds the float scratch memory for large N, and fixes which
# random stream each sample comes from (so N does not change the first samples).
_BLOCK = 1024
_NOISE_STD = 28.0


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.36)


# One mask per class over coordinates in shape units (the shape's radius is 1), in CLASSES order.
_SHAPES = (
    lambda u, v: u * u + v * v <= 1.0,
    lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,
    lambda u, v: (v >= -0.85) & (v <= 0.85) & (np.abs(u) <= (v + 0.85) * 0.55),
    lambda u, v: (
        ((np.abs(u) <= 0.22) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.22) & (np.abs(u) <= 0.95))
    ),
    _ring,
    lambda u, v: (np.abs(v) <= 0.25) & (np.abs(u) <= 1.0),
    lambda u, v: (np.abs(u) <= 0.25) & (np.abs(v) <= 1.0),
    lambda u, v: (np.abs(u - v) <= 0.32) & (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9),
    lambda u, v: np.abs(u) + np.abs(v) <= 1.05,
    lambda u, v: ((u - 0.55) ** 2 + v * v <= 0.16) | ((u + 0.55) ** 2 + v * v <= 0.16),
)


def _masks(label: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean (N, S, S) masks; u is (N, 1, S) and v is (N, S, 1) in shape units."""
    out = np.zeros((len(label), v.shape[1], u.shape[2]), bool)
    for k, shape in enumerate(_SHAPES):
        pick = np.flatnonzero(label == k)
        if len(pick):
            out[pick] = shape(u[pick], v[pick])
    return out


def _block(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, len(CLASSES), n)
    radius = rng.uniform(0.16, 0.42, n) * size
    aspect = rng.uniform(0.85, 1.15, n)
    ry, rx = radius * aspect, radius / aspect
    cx = rng.uniform(rx, size - rx)
    cy = rng.uniform(ry, size - ry)
    grid = np.arange(size, dtype=np.float32) + 0.5
    u = (grid[None, None, :] - cx[:, None, None]) / rx[:, None, None]
    v = (grid[None, :, None] - cy[:, None, None]) / ry[:, None, None]
    mask = _masks(label, u.astype(np.float32), v.astype(np.float32))

    # Foreground differs from background by 70..185 in every channel (mod 256), so the shape
    # is visible whatever the colours are, but neither colour says anything about the class.
    background = rng.integers(0, 256, (n, 3))
    foreground = (background + rng.integers(70, 186, (n, 3))) % 256
    # A gentle linear gradient keeps the background from being a flat, trivially removable value.
    slope = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32) * (40.0 / size)
    ramp = slope[:, 0, None, None] * (grid[None, None, :] - size / 2) + slope[:, 1, None, None] * (
        grid[None, :, None] - size / 2
    )
    image = np.where(
        mask[:, None], foreground[:, :, None, None], background[:, :, None, None]
    ).astype(np.float32)
    image += ramp[:, None]
    image += rng.normal(0.0, _NOISE_STD, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label.astype(np.int64)


def generate(n: int, size: int = DEFAULT_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make ``n`` samples, uint8 (n, 3, size, size) and int64 labels, from ``seed`` alone."""
    xs, ys = [], []
    for b, start in enumerate(range(0, n, _BLOCK)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, b, 0x5EA9E5]))
        x, y = _block(rng, min(_BLOCK, n - start), size)
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0, 3, size, size), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)
