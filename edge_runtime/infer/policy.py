"""When the board answers a sample itself: the exit's confidence against a threshold.

- fixed: `--threshold T`.
- calibrated: the threshold that reaches `--target-accuracy A`, or keeps the offloaded fraction
  within `--max-offload F`, read off the early-exit table model.json carries (measured on the
  training run's held-out split, with the exit's and the final classifier's answers per sample).
- adaptive (`--latency-budget MS`, on top of either): when the offload backlog would push a
  sample's latency past the budget, the board answers it (MDI-Exit's load adaptation); each
  switch is recorded with when and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import UsageFault

# Smoothing of the per-request service time the adaptive policy predicts from.
EWMA = 0.2


def check_fraction(name: str, value: float) -> float:
    """A value that must lie in 0..1; UsageFault naming the option otherwise."""
    if not 0.0 <= value <= 1.0:
        raise UsageFault(f"{name} {value}: must be between 0 and 1")
    return value


def calibrate(
    table: list[dict[str, Any]], *, target_accuracy: float | None, max_offload: float | None
) -> tuple[float, str]:
    """(threshold, why) from model.json's early-exit table.

    target accuracy: the lowest threshold (most answered at the edge) whose accuracy reaches A;
    max offload: the highest threshold (most accurate) that sends at most F to the host.
    """
    if not table:
        raise UsageFault("the model has no early-exit table (model.json): give --threshold")
    rows = sorted(table, key=lambda r: r["threshold"])
    if target_accuracy is not None:
        ok = [r for r in rows if r["accuracy"] >= target_accuracy]
        row = ok[0] if ok else rows[-1]
        why = (
            f"target accuracy {target_accuracy}: {row['accuracy']} at threshold {row['threshold']}"
        )
    else:
        assert max_offload is not None
        ok = [r for r in rows if 1 - r["fraction_at_edge"] <= max_offload]
        row = ok[-1] if ok else rows[0]
        why = f"max offload {max_offload}: {1 - row['fraction_at_edge']:.4f} at threshold {row['threshold']}"
    return float(row["threshold"]), why


@dataclass
class ExitPolicy:
    """Decides per sample: answer at the edge, or offload."""

    threshold: float
    source: str  # how the threshold was chosen
    latency_budget_s: float | None = None
    service_s: float | None = None  # predicted seconds per queued offload (EWMA)
    overloaded: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def at_edge(self, confidence: float, pending: int) -> tuple[bool, str]:
        """(answer at the edge?, why) for a sample whose exit confidence is `confidence`, with
        `pending` offloads awaiting answers."""
        if confidence >= self.threshold:
            return True, "confident"
        if self.latency_budget_s is None or self.service_s is None:
            return False, "offload"
        predicted = self.service_s * (pending + 1)
        over = predicted > self.latency_budget_s
        if over != self.overloaded:
            self.overloaded = over
            self.events.append(
                {
                    "t_s": round(time.monotonic() - self.started, 4),
                    "policy": "edge-answers-all" if over else f"threshold {self.threshold}",
                    "why": f"predicted offload latency {1000 * predicted:.1f} ms "
                    f"{'>' if over else '<='} budget {1000 * self.latency_budget_s:.1f} ms "
                    f"({pending} pending)",
                }
            )
        return (True, "backlog") if over else (False, "offload")

    def observed(self, latency_s: float, pending_at_send: int) -> None:
        """An offload's answer came after `latency_s` with `pending_at_send` ahead of it."""
        per = latency_s / (pending_at_send + 1)
        self.service_s = per if self.service_s is None else (1 - EWMA) * self.service_s + EWMA * per

    def describe(self) -> dict[str, Any]:
        """The policy for the report."""
        return {
            "threshold": self.threshold,
            "source": self.source,
            "latency_budget_ms": None
            if self.latency_budget_s is None
            else round(1000 * self.latency_budget_s, 3),
            "events": self.events,
        }
