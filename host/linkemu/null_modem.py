"""Two pseudo-terminals wired like a null-modem cable, optionally paced to a baud rate.

A pty does not pace to its configured speed (writes go through at memory speed), so a serial
link's real throughput is emulated here: each direction is limited to baud/10 bytes per second
(8N1: ten bits on the wire per byte). Each end is a real device path that pyserial opens.

A noisy line: ``bit_error_rate`` flips that fraction of the bits carried, at random positions,
in both directions (a seeded generator, so a test sees the same noise each run for the same
reads). ``byte_flip_rate`` garbles and ``byte_drop_rate`` loses that fraction of the bytes
carried (a UART's framing errors and overruns), each byte on its own.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time

import numpy as np


class NullModem:
    """`paths[0]` and `paths[1]` are the two ends; bytes written to one come out of the other."""

    def __init__(
        self,
        baud: int | None = None,
        bit_error_rate: float = 0.0,
        seed: int = 0,
        byte_flip_rate: float = 0.0,
        byte_drop_rate: float = 0.0,
    ) -> None:
        for name, rate in (
            ("bit_error_rate", bit_error_rate),
            ("byte_flip_rate", byte_flip_rate),
            ("byte_drop_rate", byte_drop_rate),
        ):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} {rate}: expected 0 <= rate < 1")
        self.baud = baud
        self.bit_error_rate = bit_error_rate
        self.byte_flip_rate = byte_flip_rate
        self.byte_drop_rate = byte_drop_rate
        self.bits_flipped = 0
        self.bytes_flipped = 0
        self.bytes_dropped = 0
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._m1, s1 = os.openpty()
        self._m2, s2 = os.openpty()
        self.paths = (os.ttyname(s1), os.ttyname(s2))
        self._slaves = (s1, s2)  # kept open so the masters never see EIO between sessions
        self.bytes = {self._m1: 0, self._m2: 0}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(src, dst), name="null-modem", daemon=True)
            for src, dst in ((self._m1, self._m2), (self._m2, self._m1))
        ]
        for t in self._threads:
            t.start()

    def _pump(self, src: int, dst: int) -> None:
        """One direction: full duplex, like a cable; paced to baud/10 bytes/s when set."""
        chunk = 65536 if self.baud is None else max(16, self.baud // 10 // 50)  # ~20 ms a chunk
        free_at = 0.0  # when the emulated wire is free again
        while not self._stop.is_set():
            ready, _, _ = select.select([src], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(src, chunk)
            except OSError:  # no reader on that end yet (EIO): nothing to forward
                time.sleep(0.01)
                continue
            if self.baud is not None:
                now = time.monotonic()
                free_at = max(now, free_at) + len(data) * 10 / self.baud
                if free_at > now:
                    time.sleep(free_at - now)
            self.bytes[src] += len(data)
            if self.bit_error_rate:
                data = self._corrupt(data)
            if self.byte_flip_rate or self.byte_drop_rate:
                data = self._garble(data)
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]

    def _corrupt(self, data: bytes) -> bytes:
        """Flip Binomial(bits, rate) random bits of ``data``."""
        with self._rng_lock:
            flips = int(self._rng.binomial(len(data) * 8, self.bit_error_rate))
            if not flips:
                return data
            positions = self._rng.integers(0, len(data) * 8, size=flips)
        out = bytearray(data)
        for bit in positions:
            out[bit // 8] ^= 1 << (bit % 8)
        self.bits_flipped += flips
        return bytes(out)

    def _garble(self, data: bytes) -> bytes:
        """Replace Binomial(n, flip) bytes with other values, then drop Binomial(n, drop) bytes."""
        with self._rng_lock:
            n = len(data)
            flips = self._rng.integers(0, n, size=int(self._rng.binomial(n, self.byte_flip_rate)))
            masks = self._rng.integers(1, 256, size=len(flips))
            drops = self._rng.integers(0, n, size=int(self._rng.binomial(n, self.byte_drop_rate)))
        if not len(flips) and not len(drops):
            return data
        out = bytearray(data)
        for pos, mask in zip(flips, masks, strict=True):
            out[pos] ^= int(mask)
        for pos in sorted(set(int(p) for p in drops), reverse=True):
            del out[pos]
        self.bytes_flipped += len(flips)
        self.bytes_dropped += len(set(int(p) for p in drops))
        return bytes(out)

    @property
    def bytes_forwarded(self) -> tuple[int, int]:
        """Bytes carried (from end 0 to end 1, from end 1 to end 0)."""
        return self.bytes[self._m1], self.bytes[self._m2]

    def close(self) -> None:
        """Stop forwarding and close both pairs."""
        self._stop.set()
        for t in self._threads:
            t.join(1.0)
        for fd in (self._m1, self._m2, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> NullModem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
