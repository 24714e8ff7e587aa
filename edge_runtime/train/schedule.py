"""The learning-rate schedule a bundle names: the rate for each epoch, for both halves.

The schedule is part of the bundle (`hostctl export --lr-schedule`), written into the edge's and
the cloud's optimizer config in the manifest, so the two halves read the same one and the
bundle's hash (checked at the handshake) makes them agree. It is a function of the epoch alone:
the edge sets its engine's rate at each epoch start (after a resume too), the host sets its
tail's rate from the epoch in each batch's id. No message carries it, so resume, fleets and
old hosts work as before.

A schedule that decays to an end needs the run's length: it is stored in the spec at export
(`cosine:epochs=20`), because the host never hears the edge's `--epochs`, and a fleet's edges
share one tail. Past its end a schedule holds its last rate.

Pure Python: the edge with the ORT engine imports neither torch nor onnx.

Spec grammar, ``NAME[:KEY=VALUE,...]``:

* ``constant``: the bundle's lr throughout (the default; a manifest without a schedule).
* ``cosine:epochs=E[,floor=F]``: half a cosine from lr down to F x lr over E epochs, per epoch
  as torch's ``CosineAnnealingLR(T_max=E)`` steps it (epoch e: ``F + (1 - F)(1 + cos(pi e/E))/2``).
* ``step:every=N[,gamma=G]``: lr x G every N epochs (G 0.1 by default), as ``StepLR``.
* any of them ``warmup=W``: the first W epochs rise linearly, epoch e at (e + 1)/(W + 1) of
  the schedule's rate; the schedule proper starts after them (cosine then spans E - W epochs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("constant", "cosine", "step")
# The keys each kind takes, with their types; warmup is everyone's.
_KEYS: dict[str, dict[str, type]] = {
    "constant": {"warmup": int},
    "cosine": {"epochs": int, "floor": float, "warmup": int},
    "step": {"every": int, "gamma": float, "warmup": int},
}
GRAMMAR = "constant | cosine:epochs=E[,floor=F] | step:every=N[,gamma=G], each [,warmup=W]"


class ScheduleError(ValueError):
    """A schedule spec (or a manifest's schedule) that does not parse or cannot work."""


@dataclass(frozen=True)
class LrSchedule:
    """A learning-rate multiplier per epoch (epochs counted from 0)."""

    kind: str = "constant"
    epochs: int = 0  # cosine: the epochs the decay spans, warm-up included
    floor: float = 0.0  # cosine: the last rate, a fraction of the bundle's lr
    every: int = 0  # step: epochs between two decays
    gamma: float = 0.1  # step: the factor of each decay
    warmup: int = 0  # epochs of linear warm-up before the schedule proper

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScheduleError(f"unknown lr schedule {self.kind!r}: use {GRAMMAR}")
        if self.warmup < 0:
            raise ScheduleError(f"lr schedule warmup={self.warmup}: must be >= 0")
        if self.kind == "cosine":
            if self.epochs < 1:
                raise ScheduleError(
                    "lr schedule cosine needs epochs=E >= 1 (the run's --epochs: the decay "
                    "ends there)"
                )
            if self.warmup >= self.epochs:
                raise ScheduleError(
                    f"lr schedule cosine: warmup={self.warmup} leaves nothing of "
                    f"epochs={self.epochs}"
                )
            if not 0.0 <= self.floor <= 1.0:
                raise ScheduleError(f"lr schedule cosine floor={self.floor:g}: must be in 0..1")
        if self.kind == "step":
            if self.every < 1:
                raise ScheduleError("lr schedule step needs every=N >= 1 (epochs between decays)")
            if not 0.0 < self.gamma <= 1.0:
                raise ScheduleError(f"lr schedule step gamma={self.gamma:g}: must be in (0, 1]")

    @property
    def constant(self) -> bool:
        """Whether every epoch gets the bundle's lr."""
        return self.kind == "constant" and self.warmup == 0

    def factor(self, epoch: int) -> float:
        """The multiplier of the bundle's lr for `epoch` (0-based)."""
        if epoch < 0:
            raise ScheduleError(f"epoch {epoch} is negative")
        if epoch < self.warmup:
            return (epoch + 1) / (self.warmup + 1)
        e = epoch - self.warmup
        if self.kind == "cosine":
            span = self.epochs - self.warmup
            t = min(e, span) / span  # past the end: hold the last rate (the floor)
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "step":
            return float(self.gamma ** (e // self.every))
        return 1.0

    def lr(self, base_lr: float, epoch: int) -> float:
        """The learning rate for `epoch` given the bundle's `base_lr`."""
        return base_lr * self.factor(epoch)

    def spec(self) -> str:
        """The spec that parses back to this schedule (what `hostctl inspect` shows)."""
        defaults = LrSchedule()
        keys = [
            f"{k}={getattr(self, k):g}"
            for k in _KEYS[self.kind]
            if getattr(self, k) != getattr(defaults, k) or k in ("epochs", "every")
        ]
        return self.kind + (":" + ",".join(keys) if keys else "")

    def to_manifest(self) -> dict[str, Any]:
        """The manifest entry (inside each half's optimizer config): only this kind's keys."""
        return {"kind": self.kind, **{k: getattr(self, k) for k in _KEYS[self.kind]}}

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any] | None) -> LrSchedule:
        """The schedule of a manifest entry; None (a bundle from before schedules): constant."""
        if entry is None:
            return cls()
        if not isinstance(entry, Mapping) or "kind" not in entry:
            raise ScheduleError(f"the manifest's lr schedule {entry!r} has no kind")
        kind = entry["kind"]
        if kind not in KINDS:
            raise ScheduleError(
                f"the manifest's lr schedule {kind!r} is unknown: {', '.join(KINDS)}"
            )
        allowed = _KEYS[kind]
        unknown = sorted(set(entry) - {"kind"} - set(allowed))
        if unknown:
            raise ScheduleError(f"the manifest's lr schedule {kind} has unknown keys {unknown}")
        try:
            values = {k: allowed[k](v) for k, v in entry.items() if k != "kind"}
        except (TypeError, ValueError):
            raise ScheduleError(
                f"the manifest's lr schedule {dict(entry)!r} is malformed"
            ) from None
        return cls(kind=kind, **values)

    @classmethod
    def parse(cls, text: str) -> LrSchedule:
        """A schedule from its spec (`cosine:epochs=20,warmup=1`); ScheduleError naming what
        is wrong."""
        name, _, rest = text.strip().partition(":")
        name = name.strip().lower()
        if name not in KINDS:
            raise ScheduleError(f"unknown lr schedule {name!r}: use {GRAMMAR}")
        allowed = _KEYS[name]
        values: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if not eq or key not in allowed:
                raise ScheduleError(
                    f"lr schedule {name}: {item!r} is not one of "
                    f"{', '.join(k + '=' for k in allowed)}"
                )
            if key in values:
                raise ScheduleError(f"lr schedule {name}: {key} given twice")
            try:
                values[key] = allowed[key](raw.strip())
            except ValueError:
                kind = "an integer" if allowed[key] is int else "a number"
                raise ScheduleError(f"lr schedule {name}: {key}={raw} is not {kind}") from None
        return cls(kind=name, **values)


CONSTANT = LrSchedule()


def length_note(schedule: LrSchedule, run_epochs: int) -> str | None:
    """A warning when a run trains another number of epochs than its schedule decays over
    (legitimate, e.g. a run stopped early on purpose, but rarely meant); None when they agree."""
    if schedule.kind != "cosine" or schedule.epochs == run_epochs:
        return None
    what = (
        f"the last {run_epochs - schedule.epochs} at its floor"
        if run_epochs > schedule.epochs
        else f"ending at lr x {schedule.factor(run_epochs - 1):.3g}, before its end"
    )
    return (
        f"the bundle's lr schedule {schedule.spec()} spans {schedule.epochs} epochs and this "
        f"run trains {run_epochs}: {what}"
    )


def schedule_of(optimizer_config: Mapping[str, Any]) -> LrSchedule:
    """The schedule in a manifest's optimizer config (`{"type", "lr", ..., "schedule"}`)."""
    return LrSchedule.from_manifest(optimizer_config.get("schedule"))


def rate_report(optimizer_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a run report says of its learning rate: the bundle's base `lr` and its
    `lr_schedule` as the spec that parses back to it; None for a side that trains nothing."""
    if optimizer_config is None:
        return {"lr": None, "lr_schedule": None}
    return {
        "lr": float(optimizer_config["lr"]),
        "lr_schedule": schedule_of(optimizer_config).spec(),
    }


def lr_for_epoch(optimizer_config: Mapping[str, Any], epoch: int) -> float:
    """The learning rate a manifest's optimizer config gives for `epoch` (0-based)."""
    return schedule_of(optimizer_config).lr(float(optimizer_config["lr"]), epoch)


__all__ = [
    "CONSTANT",
    "GRAMMAR",
    "KINDS",
    "LrSchedule",
    "ScheduleError",
    "length_note",
    "lr_for_epoch",
    "rate_report",
    "schedule_of",
]
