"""Fixtures of the privacy suite: a smallcnn bundle for 8x8 digits, and the e2e harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The end-to-end harness (real `hostctl serve` and `edge-runtime run` subprocesses).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))


@pytest.fixture(scope="session")
def digits_bundle(exported) -> Path:
    """smallcnn split 1 on 1x8x8 digits: the earliest cut, where inversion is easiest."""
    return exported("smallcnn", 1, input_shape=(1, 8, 8))
