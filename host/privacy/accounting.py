"""(epsilon, delta) of the edge's activation noise, from Google's dp-accounting RDP accountant.

The mechanism (edge_runtime/privacy.py) releases each training sample's activation once per
epoch, clipped to L2 norm C, plus N(0, (sigma C)^2) noise per element. Two inputs' clipped
activations differ by at most 2C, so each release is a Gaussian mechanism with noise multiplier
sigma / 2 with respect to that sample (replace-one adjacency), and a run of E epochs composes E
of them. Every sample is released in every epoch, so there is no amplification by subsampling:
the batch/dataset sampling rate of DP-SGD accounting does not apply here (docs/privacy.md).
"""

from __future__ import annotations

import dp_accounting
import numpy as np

from edge_runtime.privacy import check_noise_multiplier
from host.privacy import DEFAULT_DELTA

# Two clipped activations are at most 2 x clip apart (replace one sample by another).
SENSITIVITY_IN_CLIPS = 2.0
# Fine RDP orders: with only a handful of releases the optimal order is not an integer, and
# dp-accounting's default grid would overstate epsilon by a few percent.
RDP_ORDERS = tuple(
    np.round(np.concatenate([np.arange(1.01, 10, 0.01), np.arange(10, 257, 0.5)]), 3)
)


def releases_event(noise_multiplier: float, releases: int) -> dp_accounting.DpEvent:
    """The DpEvent of `releases` noisy releases of one sample's activation."""
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / SENSITIVITY_IN_CLIPS)
    return dp_accounting.SelfComposedDpEvent(gaussian, releases)


def activation_epsilon(
    noise_multiplier: float, releases: int, delta: float = DEFAULT_DELTA
) -> float:
    """Epsilon at `delta` for a sample whose activation is released `releases` times (epochs).

    Infinite without noise. Raises ValueError for a negative multiplier, releases < 1 or a
    delta outside (0, 1).
    """
    sigma = check_noise_multiplier(noise_multiplier)
    if not isinstance(releases, (int, np.integer)) or releases < 1:
        raise ValueError(f"releases must be an integer >= 1 (epochs), got {releases!r}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if sigma == 0.0:
        return float("inf")
    accountant = dp_accounting.rdp.RdpAccountant(list(RDP_ORDERS))
    accountant.compose(releases_event(sigma, int(releases)))
    return float(accountant.get_epsilon(delta))


def privacy_figures(
    clip: float, noise_multiplier: float, epochs: int, delta: float = DEFAULT_DELTA
) -> dict[str, float | int | str]:
    """What a report records about the defence of a run of `epochs` epochs."""
    return {
        "dp_clip": clip,
        "dp_noise": noise_multiplier,
        "releases_per_sample": epochs,
        "delta": delta,
        "epsilon": activation_epsilon(noise_multiplier, epochs, delta),
        "accountant": f"dp-accounting {_version()} RDP, Gaussian x {epochs}, sensitivity 2 x clip",
    }


def _version() -> str:
    from importlib.metadata import version

    return version("dp-accounting")
