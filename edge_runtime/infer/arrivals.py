"""When samples arrive at the board: an open-loop arrival process for inference.

Without a rate, each sample is taken as soon as the board has dealt with the previous one
(closed loop: the board never waits and a backlog can only build on the link). With
`--rate R`, sample i arrives at a fixed time whatever the board is doing (open loop), evenly
spaced at R samples/s; `--burst FACTOR:START:COUNT` makes samples START..START+COUNT-1 arrive
FACTOR times faster. Spacing is deterministic, not Poisson, so runs repeat. A sample's latency
counts from its arrival, so time spent waiting for the board is part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import UsageFault


@dataclass(frozen=True)
class Arrivals:
    """Arrival times of samples: closed loop (rate None) or evenly spaced with one burst."""

    rate: float | None = None  # samples/s outside the burst
    burst_factor: float = 1.0
    burst_start: int = 0
    burst_count: int = 0

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise UsageFault(f"--rate {self.rate}: must be a positive number of samples/s")
        if self.burst_count and self.rate is None:
            raise UsageFault("--burst needs --rate (a burst is a faster rate for a while)")
        if self.burst_factor <= 0 or self.burst_start < 0 or self.burst_count < 0:
            raise UsageFault("--burst FACTOR:START:COUNT: FACTOR > 0, START and COUNT >= 0")

    def times(self, n: int) -> np.ndarray | None:
        """Seconds from the run's start at which samples 0..n-1 arrive; None for closed loop."""
        if self.rate is None:
            return None
        gaps = np.full(n, 1.0 / self.rate)
        burst = slice(self.burst_start, self.burst_start + self.burst_count)
        gaps[burst] = 1.0 / (self.rate * self.burst_factor)
        # Sample 0 arrives at 0; sample i after the gaps of samples 1..i (its own spacing).
        return np.concatenate([[0.0], np.cumsum(gaps[1:])]) if n else np.zeros(0)

    def in_burst(self, sample: int) -> bool:
        """Whether `sample` arrives in the burst."""
        return self.burst_start <= sample < self.burst_start + self.burst_count

    def describe(self) -> dict[str, Any]:
        """The arrival process for the report."""
        if self.rate is None:
            return {"kind": "closed loop (next sample when the board is free)"}
        out: dict[str, Any] = {"kind": "open loop, evenly spaced", "rate_per_s": self.rate}
        if self.burst_count:
            out["burst"] = {
                "factor": self.burst_factor,
                "start": self.burst_start,
                "count": self.burst_count,
                "rate_per_s": self.rate * self.burst_factor,
            }
        return out


def parse_burst(spec: str) -> tuple[float, int, int]:
    """`FACTOR:START:COUNT` -> (factor, start, count); UsageFault naming the form otherwise."""
    parts = spec.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        factor, start, count = float(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        raise UsageFault(
            f"--burst {spec}: give FACTOR:START:COUNT, e.g. 4:100:50 (samples 100..149 arrive "
            "4 times faster)"
        ) from None
    if factor <= 0 or start < 0 or count < 1:
        raise UsageFault(f"--burst {spec}: FACTOR > 0, START >= 0, COUNT >= 1")
    return factor, start, count
