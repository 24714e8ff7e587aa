"""Run reports: the typed report, one JSON writer and one per-batch CSV writer, for both ends.

The JSON keys shared across tools are the fields of RunReport (see docs/architecture.md).
"""

from __future__ import annotations

import csv
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunReport:
    """What every run report says, whichever side or tool wrote it; `extra` holds the keys of
    one role only (the edge's link statistics, the host's per-edge records, ...)."""

    mode: str
    role: str  # edge, cloud, or run (demo and bench: both sides merged)
    model: str | None = None
    split: int | None = None
    link: str | None = None
    epochs: int = 0
    runtime_s: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    # None: not something this role measures (the edge does not time the cloud).
    batches_sent: int | None = None
    batches_trained_cloud: int | None = None
    edge_exit_accuracy: float | None = None
    final_accuracy: float | None = None
    edge_busy_s: float | None = None
    link_busy_s: float | None = None
    cloud_busy_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: the shared keys, then the role's own."""
        shared = asdict(self)
        extra = shared.pop("extra")
        clash = set(shared) & set(extra)
        if clash:
            raise ValueError(f"report extras repeat shared keys: {', '.join(sorted(clash))}")
        return {**shared, **extra}


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write `report` as JSON atomically (tmp + rename), so a killed process leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} into a report")


class MetricsCsv:
    """Append-only per-batch metrics, one row per call, flushed as it goes; thread-safe."""

    def __init__(self, path: str | Path | None, fields: list[str]) -> None:
        self._fields = fields
        self._lock = threading.Lock()
        self._fh = None
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            self._fh = open(path, "a", newline="")  # noqa: SIM115 - lives as long as the run
            self._writer = csv.DictWriter(self._fh, fieldnames=fields, extrasaction="ignore")
            if new:
                self._writer.writeheader()

    def row(self, **values: Any) -> None:
        """Append one row (missing fields stay empty)."""
        if self._fh is None:
            return
        with self._lock:
            self._writer.writerow(values)
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
