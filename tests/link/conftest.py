"""Fixtures of the link tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from linktest_support import BUNDLE, KEY, PtyBridge, fast_config

from edge_runtime.link import HostListener


@pytest.fixture
def listener() -> Iterator[HostListener]:
    lst = HostListener(KEY, BUNDLE, config=fast_config())
    yield lst
    lst.close()


@pytest.fixture
def pty_bridge() -> Iterator[PtyBridge]:
    bridge = PtyBridge()
    yield bridge
    bridge.close()
