"""When the board answers a sample itself: the exit's confidence against a threshold.

- fixed: `--threshold T`.
- calibrated: the threshold that reaches `--target-accuracy A`, or keeps the offloaded fraction
  within `--max-offload F`, read off an early-exit table measured on a validation split that is
  disjoint from the samples answered (edge_runtime/infer/calibration.py draws it and builds the
  table with `exit_table`).
- adaptive (`--latency-budget MS`, on top of either): when the offload backlog would push a
  sample's latency past the budget, the board answers it (MDI-Exit's load adaptation); each
  switch is recorded with when and why. A sample's latency counts from its arrival, so the
  time it already waited for a busy board is part of the prediction.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.errors import UsageFault

# Smoothing of the per-request service time the adaptive policy predicts from.
EWMA = 0.2
# A threshold above any softmax confidence (which can round to exactly 1.0 in float32): every
# sample is offloaded. Split inference, and the calibration pass that needs the tail's answers.
ALWAYS_OFFLOAD = math.nextafter(1.0, 2.0)


def check_fraction(name: str, value: float) -> float:
    """A value that must lie in 0..1; UsageFault naming the option otherwise."""
    if not 0.0 <= value <= 1.0:
        raise UsageFault(f"{name} {value}: must be between 0 and 1")
    return value


def exit_table(
    confidence: np.ndarray,
    exit_correct: np.ndarray,
    final_correct: np.ndarray,
    thresholds: list[float] | None = None,
) -> list[dict[str, Any]]:
    """Early-exit table rows {threshold, fraction_at_edge, accuracy} from per-sample figures.

    Without `thresholds`, every distinct confidence is a candidate (plus ALWAYS_OFFLOAD): the
    calibration can then land between the coarse thresholds of a training run's table.
    """
    conf = np.asarray(confidence, dtype=float)
    exit_ok = np.asarray(exit_correct, dtype=bool)
    final_ok = np.asarray(final_correct, dtype=bool)
    if not len(conf) == len(exit_ok) == len(final_ok):
        raise ValueError("exit_table: confidence, exit and final answers differ in length")
    if thresholds is None:
        thresholds = [*sorted(set(conf.tolist())), ALWAYS_OFFLOAD]
    rows = []
    for t in thresholds:
        at_edge = conf >= t
        combined = np.where(at_edge, exit_ok, final_ok)
        rows.append(
            {
                "threshold": float(t),
                "fraction_at_edge": float(at_edge.mean()) if len(conf) else 0.0,
                "accuracy": float(combined.mean()) if len(conf) else 0.0,
            }
        )
    return rows


def calibrate(
    table: list[dict[str, Any]], *, target_accuracy: float | None, max_offload: float | None
) -> tuple[float, str]:
    """(threshold, why) from an early-exit table.

    target accuracy: the lowest threshold (most answered at the edge) whose accuracy reaches A
    (the most accurate row if none does); max offload: the highest threshold (most accurate)
    that sends at most F to the host.
    """
    if not table:
        raise UsageFault("no early-exit table to calibrate on: give --threshold")
    rows = sorted(table, key=lambda r: r["threshold"])
    if target_accuracy is not None:
        ok = [r for r in rows if r["accuracy"] >= target_accuracy]
        row = ok[0] if ok else max(rows, key=lambda r: (r["accuracy"], r["threshold"]))
        reached = "" if ok else " (unreachable: the most accurate threshold)"
        why = (
            f"target accuracy {target_accuracy}: {row['accuracy']:.4f} at threshold "
            f"{row['threshold']:.6g}{reached}"
        )
    else:
        assert max_offload is not None
        ok = [r for r in rows if 1 - r["fraction_at_edge"] <= max_offload]
        row = ok[-1] if ok else rows[0]
        why = (
            f"max offload {max_offload}: {1 - row['fraction_at_edge']:.4f} at threshold "
            f"{row['threshold']:.6g}"
        )
    return float(row["threshold"]), why


@dataclass
class ExitPolicy:
    """Decides per sample: answer at the edge, or offload.

    The adaptive part predicts a new offload's latency as `base + pending x service`: `base` is
    the latency of an offload sent with nothing ahead of it (link delay, transfer, the tail),
    `service` the gap between consecutive answers while requests queue (the slowest stage's
    time per request, which sets how fast a backlog drains). Both are EWMAs of what the board
    observed; until a queue has been seen, `service` is taken as `base`.
    """

    threshold: float
    source: str  # how the threshold was chosen
    latency_budget_s: float | None = None
    base_s: float | None = None  # latency of an offload with nothing ahead (EWMA)
    service_s: float | None = None  # seconds between answers while requests queue (EWMA)
    overloaded: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _last_answer: float | None = None

    def predicted_s(self, pending: int) -> float | None:
        """Predicted latency of an offload sent now behind `pending` others (None: no data)."""
        if self.base_s is None and self.service_s is None:
            return None
        service = self.service_s if self.service_s is not None else self.base_s
        base = self.base_s if self.base_s is not None else service
        assert base is not None and service is not None
        return base + pending * service

    def at_edge(
        self,
        confidence: float,
        pending: int,
        sample: int | None = None,
        waited_s: float = 0.0,
    ) -> tuple[bool, str]:
        """(answer at the edge?, why) for a sample whose exit confidence is `confidence`, with
        `pending` offloads awaiting answers, `waited_s` after it arrived; a switch is recorded
        against `sample`."""
        if confidence >= self.threshold:
            return True, "confident"
        offload_s = self.predicted_s(pending)
        if self.latency_budget_s is None or offload_s is None:
            return False, "offload"
        predicted = waited_s + offload_s
        over = predicted > self.latency_budget_s
        if over != self.overloaded:
            self.overloaded = over
            self.events.append(
                {
                    "t_s": round(time.monotonic() - self.started, 4),
                    "sample": sample,
                    "policy": "edge-answers-all" if over else f"threshold {self.threshold}",
                    "why": f"predicted offload latency {1000 * predicted:.1f} ms "
                    f"{'>' if over else '<='} budget {1000 * self.latency_budget_s:.1f} ms "
                    f"({pending} pending, waited {1000 * waited_s:.1f} ms)",
                }
            )
        return (True, "backlog") if over else (False, "offload")

    def observed(self, latency_s: float, pending_at_send: int, now: float | None = None) -> None:
        """An offload's answer came after `latency_s` (from its send), with `pending_at_send`
        offloads ahead of it; `now` (time.monotonic) times the gap since the previous answer."""
        now = time.monotonic() if now is None else now
        if pending_at_send == 0:
            self.base_s = _ewma(self.base_s, latency_s)
        elif self._last_answer is not None:
            # The previous answer was for a request ahead of this one: the gap between them is
            # the time the bottleneck took for this request.
            self.service_s = _ewma(self.service_s, now - self._last_answer)
        else:
            self.base_s = _ewma(self.base_s, latency_s / (pending_at_send + 1))
        self._last_answer = now

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


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else (1 - EWMA) * old + EWMA * new
