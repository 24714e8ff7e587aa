"""Reconstruction quality: PSNR and SSIM from scikit-image, per image, then averaged.

Images are float arrays in [0, 1], shaped (N, C, H, W). scikit-image's SSIM is the reference
implementation of Wang et al. (2004) on numpy arrays; it takes an explicit data range and an odd
window no larger than the image, which 8x8 digits need (window 7). docs/privacy.md says why.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

# PSNR of a pixel-perfect reconstruction is infinite; capped so that averages stay finite.
MAX_PSNR = 100.0


def _window(height: int, width: int) -> int:
    """scikit-image's default window (7), shrunk to the largest odd side the image has."""
    side = min(7, height, width)
    return side if side % 2 else side - 1


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """PSNR in dB per image (data range 1)."""
    out = np.empty(len(original))
    for i, (a, b) in enumerate(zip(original, reconstruction, strict=True)):
        if np.array_equal(a, b):
            out[i] = MAX_PSNR
            continue
        out[i] = min(MAX_PSNR, peak_signal_noise_ratio(a, b, data_range=1.0))
    return out


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """SSIM per image (data range 1; channels compared separately and averaged)."""
    _, _, height, width = original.shape
    win = _window(height, width)
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3x3, got {height}x{width}")
    return np.array(
        [
            structural_similarity(a, b, data_range=1.0, channel_axis=0, win_size=win)
            for a, b in zip(original, reconstruction, strict=True)
        ]
    )


def score(original: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB) and mean SSIM of a batch of reconstructions."""
    a = np.clip(np.asarray(original, np.float64), 0.0, 1.0)
    b = np.clip(np.asarray(reconstruction, np.float64), 0.0, 1.0)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two (N, C, H, W) arrays of one shape, got {a.shape}, {b.shape}")
    return {"psnr": float(psnr(a, b).mean()), "ssim": float(ssim(a, b).mean())}


def mean_image_baseline(aux_images: np.ndarray, victims: np.ndarray) -> dict[str, float]:
    """The score of guessing, for every victim, the mean image of the attacker's own data."""
    guess = np.broadcast_to(np.asarray(aux_images, np.float64).mean(axis=0), victims.shape)
    return score(victims, guess)
