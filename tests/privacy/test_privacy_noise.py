"""The edge's activation noise (edge_runtime/privacy.py): clipping, noise scale, valid ranges."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_runtime.privacy import ActivationNoise, PrivacyOptionError


def norms(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x.reshape(len(x), -1), axis=1)


def test_clipping_bounds_every_sample_and_keeps_direction() -> None:
    rng = np.random.default_rng(0)
    x = (
        rng.normal(size=(16, 4, 3, 3)).astype(np.float32)
        * np.linspace(0.1, 10, 16)[:, None, None, None]
    )
    out = ActivationNoise(clip=2.0).apply(x, rng)
    assert out.shape == x.shape and out.dtype == np.float32
    assert norms(out).max() <= 2.0 * (1 + 1e-6)
    small = norms(x) <= 2.0
    assert small.any() and (~small).any()  # the batch has both kinds
    np.testing.assert_allclose(out[small], x[small], rtol=1e-6)  # below the clip: untouched
    cos = (out * x).reshape(16, -1).sum(1) / (norms(out) * norms(x))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)  # clipping only rescales


def test_noise_has_the_stated_standard_deviation() -> None:
    rng = np.random.default_rng(1)
    x = np.zeros((64, 32, 8, 8), np.float32)
    out = ActivationNoise(clip=0.5, noise_multiplier=1.5).apply(x, rng)
    assert out.std() == pytest.approx(0.75, rel=0.02)  # sigma = multiplier x clip


def test_noise_is_fresh_and_the_input_is_not_modified() -> None:
    rng = np.random.default_rng(2)
    x = np.ones((4, 10), np.float32)
    defence = ActivationNoise(clip=1.0, noise_multiplier=1.0)
    a, b = defence.apply(x, rng), defence.apply(x, rng)
    assert not np.allclose(a, b)
    assert (x == 1).all()


@pytest.mark.parametrize(
    ("clip", "noise", "says"),
    [
        (0.0, 1.0, "clip norm must be a finite number > 0"),
        (-1.0, 1.0, "clip norm must be a finite number > 0"),
        (float("nan"), 1.0, "clip norm must be a finite number > 0"),
        (1.0, -0.1, "noise multiplier must be a finite number >= 0"),
        (1.0, float("inf"), "noise multiplier must be a finite number >= 0"),
    ],
)
def test_bad_options_name_the_valid_range(clip: float, noise: float, says: str) -> None:
    with pytest.raises(PrivacyOptionError, match=says):
        ActivationNoise(clip, noise)


def test_the_edge_module_imports_no_torch() -> None:
    """A board with the ORT engine has numpy, not torch."""
    code = (
        "import sys, edge_runtime.privacy, edge_runtime.train.loop; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
