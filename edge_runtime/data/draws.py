"""Random orders and draws keyed by integers such as (seed, epoch, batch index).

Only numpy's bit generator stream (PCG64 seeded through SeedSequence) is used, never the
Generator's sampling methods: numpy keeps the raw stream stable across releases, so a board
that is upgraded or restarted re-creates exactly the same epoch order and augmentation.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

# Stream tags keep the shuffles, the limit subset, the hold-out split and augmentation independent.
SHUFFLE = 0x5B0F
SUBSET = 0x5B5E
HOLDOUT = 0x40D0
AUGMENT = 0xA06


def raw_bits(n: int, *key: int) -> np.ndarray:
    """``n`` uint64 words from the stream named by ``key`` (non-negative integers)."""
    if any(k < 0 for k in key):
        raise DataError(f"seed, epoch and batch index must be >= 0, got {key}")
    return np.random.PCG64(np.random.SeedSequence(list(key))).random_raw(n)


def permutation(n: int, *key: int) -> np.ndarray:
    """A permutation of range(n) fixed by ``key``."""
    return np.argsort(raw_bits(n, *key), kind="stable")
