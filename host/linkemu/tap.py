"""Tap: a wiretap as an impairment of the relay (relay.py); it changes nothing and keeps all.

Placed after other impairments, it records the bytes as they are put on the wire towards
their destination: what an eavesdropper on the link would see (the privacy tests read it).
"""

from __future__ import annotations

import threading

from .relay import DIRECTIONS, Direction, Impairment


class Tap(Impairment):
    """Keeps every byte that crosses, per direction: ``captured["up"]``, ``captured["down"]``."""

    def __init__(self) -> None:
        self.captured: dict[Direction, bytearray] = {d: bytearray() for d in DIRECTIONS}
        self._lock = threading.Lock()

    def carry(
        self, direction: Direction, data: bytes, due: float, cancelled: threading.Event
    ) -> tuple[bytes, float] | None:
        """Record ``data`` and pass it on unchanged."""
        with self._lock:
            self.captured[direction] += data
        return data, due

    def stats(self) -> dict[str, float | int]:
        """Bytes recorded per direction."""
        with self._lock:
            return {f"tapped_{d}": len(self.captured[d]) for d in DIRECTIONS}
