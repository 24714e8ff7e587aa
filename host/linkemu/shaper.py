"""Shape: the rate and delay of a slow link, as an impairment of the relay (relay.py).

Each direction is one pipe shared by every connection: one token bucket per direction paces
all of that direction's traffic. A chunk leaves the bucket when the link has finished sending
it and enters the connection's delay line, which releases it one-way-delay later. Rate and
delay thus compose like a real link: a bulk transfer runs at the set rate whatever the delay,
and a small message arrives after about half the RTT. The kernel does the rest: a reader only
reads while its chunk can be sent, so a fast sender is held back by its socket buffers.

Kernel-level shaping (netns + veth + ``tc tbf``) needs root, and ``netem`` is not available
here; this needs neither.
"""

from __future__ import annotations

import math
import threading
import time

from .presets import LinkSpec, parse_link
from .relay import Direction, Impairment, Relay, _sleep_until

_MIN_CHUNK = 4096
_MAX_CHUNK = 65536


def _chunk_size(rate_bps: float) -> int:
    """Bytes read per recv: ~4 ms of traffic, between 4 KiB and 64 KiB."""
    if math.isinf(rate_bps):
        return _MAX_CHUNK
    return max(_MIN_CHUNK, min(_MAX_CHUNK, int(rate_bps / 8 * 0.004)))


def _queue_limit(rate_bps: float, one_way_s: float) -> int:
    """Bytes a delay line may hold: twice what is in flight, so the delay never throttles."""
    if math.isinf(rate_bps):
        return 16 * 2**20 if one_way_s > 0 else 2**20
    return max(256 * 1024, min(64 * 2**20, int(2 * rate_bps / 8 * one_way_s)))


class _TokenBucket:
    """The pace of one direction of the link, shared by all its connections.

    ``reserve`` books bytes on the link and says when the link has finished sending them;
    bookings queue up (tokens go negative), so connections share the rate first come, first
    served. The bucket holds at most ``capacity`` bytes of credit: the burst after idling.
    """

    def __init__(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._bytes_per_s = rate_bps / 8
        # Burst: one chunk or 5 ms of traffic, enough to absorb a late wake-up of a pump.
        burst = 0 if math.isinf(rate_bps) else int(self._bytes_per_s * 0.005)
        self.capacity = max(_MIN_CHUNK, _chunk_size(rate_bps), burst)
        self._tokens = 0.0  # a link that has just come up owes the first chunk its full time
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.busy_s = 0.0

    def reserve(self, nbytes: int) -> float:
        """Book ``nbytes`` on the link; return the monotonic time the last of them is sent."""
        with self._lock:
            now = time.monotonic()
            if math.isinf(self.rate_bps):
                return now
            self.busy_s += nbytes / self._bytes_per_s
            credit = self._tokens + (now - self._stamp) * self._bytes_per_s
            self._tokens = min(float(self.capacity), credit) - nbytes
            self._stamp = now
            if self._tokens >= 0:
                return now
            return now - self._tokens / self._bytes_per_s


class Shape(Impairment):
    """A link's rates (one token bucket per direction) and its one-way delay."""

    def __init__(self, link: LinkSpec) -> None:
        self.link = link
        self._rates = {"up": link.up_bps, "down": link.down_bps}
        self._buckets = {d: _TokenBucket(rate) for d, rate in self._rates.items()}

    def carry(
        self, direction: Direction, data: bytes, due: float, cancelled: threading.Event
    ) -> tuple[bytes, float] | None:
        """Wait until the link has sent ``data``; it arrives one-way delay later."""
        one_way = self.link.one_way_s
        if not data:  # a FIN takes no time on the link, only the delay
            return data, due + one_way
        sent_at = max(due, self._buckets[direction].reserve(len(data)))
        if not _sleep_until(sent_at, cancelled):
            return None
        return data, sent_at + one_way

    def read_size(self, direction: Direction) -> int:
        """About 4 ms of traffic per chunk."""
        return _chunk_size(self._rates[direction])

    def buffer_bytes(self, direction: Direction) -> int:
        """Twice what the link holds in flight."""
        return _queue_limit(self._rates[direction], self.link.one_way_s)

    def stats(self) -> dict[str, float | int]:
        """Seconds each direction of the link was busy sending."""
        return {
            "busy_up_s": self._buckets["up"].busy_s,
            "busy_down_s": self._buckets["down"].busy_s,
        }

    def __repr__(self) -> str:
        return f"Shape({self.link.describe()})"


class ShapedRelay(Relay):
    """A relay whose only impairment is ``Shape(link)``: a slow link between edge and host."""

    def __init__(
        self,
        target: tuple[str, int],
        link: LinkSpec,
        listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        super().__init__(target, [Shape(link)], listen)
        self.link = link


def shaped(target: tuple[str, int], spec: str) -> ShapedRelay:
    """A (not yet started) relay to ``target`` shaped by ``spec`` (see ``parse_link``)."""
    return ShapedRelay(target, parse_link(spec))
