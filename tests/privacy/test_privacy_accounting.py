"""(epsilon, delta) of the activation noise, from dp-accounting's RDP accountant."""

from __future__ import annotations

import math

import pytest

from host.privacy.accounting import SENSITIVITY_IN_CLIPS, activation_epsilon

# dp-accounting's own example (rdp_privacy_accountant_test.py, test_compute_epsilon_delta_gaussian):
# "noise multiplier is chosen to obtain exactly (1,1e-6)-DP": one Gaussian release at 4.530877117.
LIBRARY_SIGMA, LIBRARY_DELTA, LIBRARY_EPSILON = 4.530877117, 1e-6, 1.0


def test_one_release_matches_the_librarys_documented_example() -> None:
    # Our multiplier is relative to the clip norm; the sensitivity is 2 x clip (replace one).
    ours = SENSITIVITY_IN_CLIPS * LIBRARY_SIGMA
    assert activation_epsilon(ours, 1, LIBRARY_DELTA) == pytest.approx(LIBRARY_EPSILON, abs=1e-4)


def test_epochs_compose_as_gaussians_do() -> None:
    """E releases at multiplier s are one release at s / sqrt(E): the same epsilon."""
    ours = SENSITIVITY_IN_CLIPS * LIBRARY_SIGMA * math.sqrt(9)
    assert activation_epsilon(ours, 9, LIBRARY_DELTA) == pytest.approx(LIBRARY_EPSILON, abs=1e-4)
    assert activation_epsilon(2.0, 10) > activation_epsilon(2.0, 5) > activation_epsilon(2.0, 1)


def test_no_noise_is_no_guarantee() -> None:
    assert activation_epsilon(0.0, 3) == math.inf


@pytest.mark.parametrize(
    ("noise", "releases", "delta", "says"),
    [
        (-1.0, 1, 1e-5, "noise multiplier must be a finite number >= 0"),
        (1.0, 0, 1e-5, "releases must be an integer >= 1"),
        (1.0, 1, 0.0, r"delta must be in \(0, 1\)"),
    ],
)
def test_bad_parameters_name_the_valid_range(
    noise: float, releases: int, delta: float, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        activation_epsilon(noise, releases, delta)
