"""Fixtures of the end-to-end suite."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_bundle(exported) -> Path:
    """smallcnn split 3 on 3x32x32: the demo's model."""
    return exported("smallcnn", 3, lr=3e-3)
