"""Resumable result rows for long benchmarks: a JSON Lines file, one finished measurement a line.

Each row carries its benchmark's format tag and the key (every parameter it was measured with);
a rerun finds what is there and measures only what is not, so a benchmark that runs for hours
goes on where it was stopped. A line cut short by a kill mid-write is ignored (and said), and
that row is measured again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class ResultRows:
    """The rows of `path` written with `format`; `add` appends (and flushes) one as it is done."""

    def __init__(self, path: Path, format: str) -> None:  # noqa: A002 - the rows' own field
        self.path = Path(path)
        self.format = format
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    print(f"{self.path}:{n}: not a complete row, ignored", file=sys.stderr)
                    continue
                if isinstance(row, dict) and row.get("format") == format and "key" in row:
                    self.rows.append(row)

    def find(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The last row made with exactly ``key``, or None."""
        for row in reversed(self.rows):
            if row["key"] == key:
                return row
        return None

    def add(self, key: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
        """Append a row and return it."""
        row = {
            "format": self.format,
            "key": key,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **figures,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
        self.rows.append(row)
        return row
