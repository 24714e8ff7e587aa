"""Board-profile pacing: stretch a step measured here to the time a slower board would take."""

from __future__ import annotations

import time


def pace(seconds: float, slowdown: float) -> float:
    """Sleep ``(slowdown - 1) * seconds`` after a step of ``seconds``; returns the paced duration."""
    if slowdown > 1:
        time.sleep((slowdown - 1) * seconds)
        return seconds * slowdown
    return seconds
