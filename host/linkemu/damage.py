"""Damage: a bad line as an impairment of the relay (relay.py): bit flips, lost and cut bytes.

Per chunk (what one recv returned) and per direction asked for, with set probabilities:
flip one bit, drop a run of up to 64 bytes, or truncate the chunk. Deterministic for a seed
(up to thread timing, which decides how the bytes fall into chunks).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .relay import Direction, Impairment


@dataclass
class DamageCounts:
    """How many faults were injected."""

    flips: int = 0
    drops: int = 0
    truncations: int = 0


class Damage(Impairment):
    """Flip, drop and truncate bytes in ``directions`` with the given per-chunk probabilities."""

    def __init__(
        self,
        flip: float = 0.0,
        drop: float = 0.0,
        truncate: float = 0.0,
        directions: Iterable[Direction] = ("up",),
        seed: int = 0,
    ) -> None:
        self.flip, self.drop, self.truncate = flip, drop, truncate
        self.directions = frozenset(directions)
        self.counts = DamageCounts()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def carry(
        self, direction: Direction, data: bytes, due: float, cancelled: threading.Event
    ) -> tuple[bytes, float] | None:
        """The chunk, damaged if this direction is; damage takes no time."""
        if direction not in self.directions or not data:
            return data, due
        return self._damage(data), due

    def _damage(self, data: bytes) -> bytes:
        with self._lock:  # both directions draw from one generator
            rng = self._rng
            buf = bytearray(data)
            if rng.random() < self.flip:
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
                self.counts.flips += 1
            if len(buf) > 1 and rng.random() < self.drop:
                i = rng.randrange(len(buf))
                n = rng.randint(1, min(64, len(buf) - i))
                del buf[i : i + n]
                self.counts.drops += 1
            if len(buf) > 1 and rng.random() < self.truncate:
                del buf[rng.randrange(len(buf)) :]
                self.counts.truncations += 1
            return bytes(buf)

    def stats(self) -> dict[str, float | int]:
        """Faults injected so far."""
        with self._lock:
            return asdict(self.counts)

    def __repr__(self) -> str:
        return f"Damage(flip={self.flip}, drop={self.drop}, truncate={self.truncate})"
