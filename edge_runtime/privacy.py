"""Activation noise: what the edge does to each activation before the codec puts it on the link.

Each sample's activation is clipped to an L2 norm of at most `clip`, then Gaussian noise of
standard deviation `noise_multiplier * clip` is added to every element. Only what crosses the
link changes: the front and its exit train on the clean activation (PriPHiT's adversarial
exit trains with the same clip and noise in its loop: engines/adversarial.py). numpy only, so a
board with the ORT engine needs nothing more (the accountant that turns these figures into
(epsilon, delta) runs on the host: `host/privacy/accounting.py`). docs/privacy.md says what this
guarantees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Norms below this are treated as zero when computing the clip factor (no division by zero).
_TINY = 1e-12


class PrivacyOptionError(ValueError):
    """A privacy option is out of its valid range; the message names the range."""


def check_clip(clip: float) -> float:
    """The clip norm as a float, or PrivacyOptionError: it must be finite and > 0."""
    value = float(clip)
    if not (math.isfinite(value) and value > 0.0):
        raise PrivacyOptionError(
            f"clip norm must be a finite number > 0 (the L2 norm each sample's activation is "
            f"clipped to), got {clip}"
        )
    return value


def check_noise_multiplier(noise_multiplier: float) -> float:
    """The noise multiplier as a float, or PrivacyOptionError: it must be finite and >= 0."""
    value = float(noise_multiplier)
    if not (math.isfinite(value) and value >= 0.0):
        raise PrivacyOptionError(
            f"noise multiplier must be a finite number >= 0 (noise std = multiplier x clip "
            f"norm; 0 clips without noise), got {noise_multiplier}"
        )
    return value


def check_lambda(value: float) -> float:
    """The adversarial exit's weight lambda as a float, or PrivacyOptionError (a ValueError)
    naming the range: finite and >= 0."""
    lam = float(value)
    if not (math.isfinite(lam) and lam >= 0.0):
        raise PrivacyOptionError(
            f"adversarial exit weight lambda must be a finite number >= 0 (0: no adversarial "
            f"term), got {value}"
        )
    return lam


# The manifest's `privacy` entry (`hostctl export --dp-clip/--dp-noise/--adv-lambda`): the
# defence an edge run applies when its own command line names none.
DEFENCE_FLAGS = {"dp_clip": "--dp-clip", "dp_noise": "--dp-noise", "adv_lambda": "--adv-lambda"}


def defence_entry(
    dp_clip: float | None, dp_noise: float | None, adv_lambda: float | None
) -> dict[str, float] | None:
    """The options as a manifest `privacy` entry (None: no defence), or PrivacyOptionError whose
    message names the flag and its valid range."""
    if dp_noise is not None and dp_clip is None:
        raise PrivacyOptionError(
            "--dp-noise needs --dp-clip: the noise's std is DP_NOISE x DP_CLIP"
        )
    entry: dict[str, float] = {}
    for key, value, check in (
        ("dp_clip", dp_clip, check_clip),
        ("dp_noise", dp_noise, check_noise_multiplier),
        ("adv_lambda", adv_lambda, check_lambda),
    ):
        if value is None:
            continue
        try:
            entry[key] = check(value)
        except PrivacyOptionError as exc:
            raise PrivacyOptionError(f"{DEFENCE_FLAGS[key]}: {exc}") from None
    return entry or None


def exported_defence(entry: object) -> dict[str, float]:
    """A manifest's `privacy` entry, checked: {dp_clip, dp_noise, adv_lambda} (absent keys:
    not part of the defence); PrivacyOptionError when it is malformed or out of range."""
    if not isinstance(entry, dict) or set(entry) - set(DEFENCE_FLAGS):
        raise PrivacyOptionError(
            f"privacy must be an object with keys among {', '.join(DEFENCE_FLAGS)}, got {entry!r:.60}"
        )
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values()):
        raise PrivacyOptionError(f"privacy values must be numbers, got {entry!r:.60}")
    return defence_entry(entry.get("dp_clip"), entry.get("dp_noise"), entry.get("adv_lambda")) or {}


@dataclass(frozen=True)
class ActivationNoise:
    """Per-sample L2 clipping to `clip` and Gaussian noise of std `noise_multiplier * clip`."""

    clip: float
    noise_multiplier: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip", check_clip(self.clip))
        object.__setattr__(self, "noise_multiplier", check_noise_multiplier(self.noise_multiplier))

    @property
    def sigma(self) -> float:
        """Standard deviation of the noise added to each element."""
        return self.noise_multiplier * self.clip

    def apply(self, activation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The activation to release: a new float32 array of the same shape (axis 0 = samples)."""
        x = np.asarray(activation, dtype=np.float32)
        if x.ndim == 0 or x.shape[0] == 0:
            return x.copy()
        flat = x.reshape(x.shape[0], -1)
        norms = np.linalg.norm(flat, axis=1)
        scale = np.minimum(1.0, self.clip / np.maximum(norms, _TINY)).astype(np.float32)
        out = flat * scale[:, None]
        if self.noise_multiplier > 0.0:
            out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(self.sigma)
        return out.reshape(x.shape)

    def describe(self) -> dict[str, float]:
        """The figures a report records (the host's accountant reads these)."""
        return {"dp_clip": self.clip, "dp_noise": self.noise_multiplier}


def noise_rng() -> np.random.Generator:
    """A generator seeded from the OS's entropy, never from the run's seed.

    The run's seed is often the default (0) and is no secret: noise drawn from it could be
    regenerated and subtracted by whoever receives the activations.
    """
    return np.random.default_rng()
