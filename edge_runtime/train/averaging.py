"""Front averaging, the edge's part: FedAvg rounds of front + exit through the host.

In a shared-tail fleet served with `hostctl serve --shared-tail --average-fronts-every N{batches|
epochs}`, the host's WELCOME carries the schedule (`resume["front_averaging"]`). At each round
boundary the edge sends its front + exit weights up (MODEL_WEIGHTS, `round` = its front version
+ 1, `samples` trained since its last round) and waits for the host's averaged front + exit of
that version, which it adopts before its next step: a batch boundary, so no step ever mixes two
fronts. Every activation it sends says which front version produced it (BATCH.front_version).

The end of training is always a round boundary (`last`): every edge finishes on an averaged
front, which is what `--model-out` writes. An averaged front that arrives while the edge is not
waiting (it joined a fleet that had averaged already, or its link came back) is adopted at the
next batch boundary. Only weights travel, never a gradient and never data.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_runtime.model_messages import weight_messages

if TYPE_CHECKING:
    from edge_runtime.engines import Engine
    from edge_runtime.train.sender import Sender

UNITS = ("batches", "epochs")
SCHEDULE_FORM = "N{batches|epochs}, e.g. 20batches or 1epochs (N >= 1)"
VERSION_KEY, SAMPLES_KEY = "front_version", "front_samples_since_round"  # RunProgress.extra


@dataclass(frozen=True)
class AveragingSchedule:
    """How often a fleet averages its fronts: every `every` batches or epochs of each edge."""

    every: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> AveragingSchedule:
        """'20batches', '1epoch', '2 epochs' -> a schedule; ValueError naming the form."""
        match = re.fullmatch(r"\s*(\d+)\s*(batch|batches|epoch|epochs)\s*", str(text))
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"--average-fronts-every {text!r}: expected {SCHEDULE_FORM}")
        unit = "batches" if match.group(2).startswith("batch") else "epochs"
        return cls(int(match.group(1)), unit)

    @classmethod
    def from_welcome(cls, info: Any) -> AveragingSchedule | None:
        """The schedule a host's WELCOME announced (None: it averages no fronts)."""
        if not isinstance(info, dict):
            return None
        every, unit = info.get("every"), info.get("unit")
        if not isinstance(every, int) or every < 1 or unit not in UNITS:
            return None
        return cls(every, unit)

    def as_dict(self) -> dict[str, Any]:
        """What WELCOME carries."""
        return {"every": self.every, "unit": self.unit}

    def __str__(self) -> str:
        return f"every {self.every} {self.unit}"


class FrontRounds:
    """One edge's averaging rounds: when to send its front, and adopting what comes back."""

    def __init__(
        self,
        engine: Engine,
        schedule: AveragingSchedule,
        *,
        epochs: int,
        batches_per_epoch: int,
        progress_extra: dict[str, Any],
        timeout: float,
    ) -> None:
        self.engine = engine
        self.schedule = schedule
        self.epochs = epochs
        self.batches_per_epoch = batches_per_epoch
        # Kept in the run's progress file, so that a resumed edge knows its front's version.
        self._extra = progress_extra
        self.timeout = timeout
        self.rounds = 0  # rounds this edge took part in (this part of the run)
        self.adopted: list[int] = []  # versions adopted, in order
        self.bytes_up = 0  # tensor bytes of this edge's fronts sent up
        self.bytes_down = 0  # tensor bytes of averaged fronts received
        self.blocked_s = 0.0  # waiting for the host's average

    @property
    def version(self) -> int:
        """The front version this edge trains now (0: the bundle's initial front)."""
        return int(self._extra.get(VERSION_KEY, 0))

    def adopt_pending(self, sender: Sender) -> None:
        """At a batch boundary: adopt an averaged front the host sent since, if newer."""
        sender.poll_host(0.0)
        self._adopt(sender.take_front(self.version))

    def after_batch(self, epoch: int, index: int, samples: int, sender: Sender) -> None:
        """Count the batch's samples; run a round if this batch ends one."""
        self._extra[SAMPLES_KEY] = int(self._extra.get(SAMPLES_KEY, 0)) + samples
        if self.schedule.unit != "batches":
            return
        last = epoch == self.epochs - 1 and index == self.batches_per_epoch - 1
        done = epoch * self.batches_per_epoch + index + 1
        if last or done % self.schedule.every == 0:
            self._round(sender, last)

    def after_epoch(self, epoch: int, sender: Sender) -> None:
        """Run a round if this epoch ends one (epoch schedules; the last epoch always does)."""
        last = epoch == self.epochs - 1
        if self.schedule.unit == "epochs" and (last or (epoch + 1) % self.schedule.every == 0):
            self._round(sender, last)

    def _round(self, sender: Sender, last: bool) -> None:
        """Send this front up, wait for the average of its round, adopt it."""
        target = self.version + 1
        samples = int(self._extra.get(SAMPLES_KEY, 0))
        # Weights only: integer buffers (BatchNorm's batch counters, torch engine) are counts of
        # this edge's steps, not weights, and stay local; so ort and torch edges average alike.
        weights = {k: v for k, v in self.engine.export_weights().items() if v.dtype.kind == "f"}
        for msg in weight_messages(weights, {}, round=target, samples=samples, last=last):
            self.blocked_s += sender.put(msg)
            self.bytes_up += msg.nbytes
        t0 = time.perf_counter()
        parts = sender.await_front(self.version, self.timeout)
        self.blocked_s += time.perf_counter() - t0
        self.rounds += 1
        self._extra[SAMPLES_KEY] = 0
        self._adopt(parts)

    def _adopt(self, parts: list | None) -> None:
        if not parts:
            return
        weights = self.engine.export_weights()  # what the average leaves out stays as it is
        for part in parts:
            weights.update(part.tensors)
            self.bytes_down += part.nbytes
        self.engine.load_weights(weights)
        self._extra[VERSION_KEY] = parts[0].round
        self.adopted.append(parts[0].round)

    def report(self) -> dict[str, Any]:
        """The edge report's `front_averaging`."""
        return {
            "schedule": str(self.schedule),
            "front_version": self.version,
            "rounds": self.rounds,
            "adopted": self.adopted,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "blocked_s": round(self.blocked_s, 3),
        }
