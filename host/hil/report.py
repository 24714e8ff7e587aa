"""The HIL report: what the suite checked and measured on one board, as JSON and markdown.

Tests record figures into one `HilReport` per session; the suite's finish hook writes
`hil-report.json` (every figure, every test's outcome) and `hil-report.md` (one summary row per
board, so reports of different boards paste into one table) into `--out`.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.deploy.board import Board

REPORT_JSON = "hil-report.json"
REPORT_MD = "hil-report.md"
FORMAT = "hiertrain-hil/1"

# The summary row: (figure key, column title, unit formatter).
SUMMARY = (
    ("edge_step_s_median", "edge step (median)", lambda v: f"{1000 * v:.1f} ms"),
    ("epoch_s", "epoch", lambda v: f"{v:.2f} s"),
    ("link_throughput_bps", "link throughput", lambda v: f"{v / 1e6:.2f} Mbit/s"),
    ("pipeline_efficiency", "overlap (runtime / busiest)", lambda v: f"{v:.2f}"),
    ("deploy_s", "deploy", lambda v: f"{v:.1f} s"),
    ("infer_latency_ms_p50", "inference p50", lambda v: f"{v:.1f} ms"),
    ("infer_fraction_at_edge", "answered at the exit", lambda v: f"{100 * v:.0f}%"),
)


@dataclass
class TestOutcome:
    name: str
    outcome: str  # passed | failed | skipped
    duration_s: float
    reason: str = ""


@dataclass
class HilReport:
    """Figures and test outcomes of one HIL session on one board."""

    board: Board
    started: float = field(default_factory=time.time)
    figures: dict[str, Any] = field(default_factory=dict)
    board_facts: dict[str, Any] = field(default_factory=dict)  # what the board said it is
    tests: list[TestOutcome] = field(default_factory=list)

    def record(self, **figures: Any) -> None:
        """Add figures measured by a test (later values of a key replace earlier ones)."""
        self.figures.update(figures)

    def fact(self, **facts: Any) -> None:
        """Add what the board reported about itself (uname -m, Python version, ...)."""
        self.board_facts.update(facts)

    def outcome(self, name: str, outcome: str, duration_s: float, reason: str = "") -> None:
        self.tests.append(TestOutcome(name, outcome, round(duration_s, 3), reason))

    def as_dict(self) -> dict[str, Any]:
        b = self.board
        counts = {
            k: sum(t.outcome == k for t in self.tests) for k in ("passed", "failed", "skipped")
        }
        return {
            "format": FORMAT,
            "board": {
                "name": b.name,
                "arch": b.arch,
                "python": b.python,
                "engine": b.resolved_engine,
                "connection": b.connection.describe(),
                "link": b.link.emulate or b.link.connect or "none",
                "file": str(b.path) if b.path else None,
                **{f"reported_{k}": v for k, v in self.board_facts.items()},
            },
            "host": {"machine": platform.machine(), "python": platform.python_version()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 3),
            "passed": counts["failed"] == 0,
            "counts": counts,
            "figures": self.figures,
            "tests": [t.__dict__ for t in self.tests],
        }

    def write(self, out: Path) -> tuple[Path, Path]:
        """Write hil-report.json and hil-report.md into `out`; returns their paths."""
        out.mkdir(parents=True, exist_ok=True)
        data = self.as_dict()
        json_path, md_path = out / REPORT_JSON, out / REPORT_MD
        json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        md_path.write_text(render_markdown(data))
        return json_path, md_path


def render_markdown(data: dict[str, Any]) -> str:
    """The markdown summary: one comparable row for the board, then every test's outcome."""
    b, f, c = data["board"], data["figures"], data["counts"]
    arch = b.get("reported_arch") or b["arch"]
    heads = ["board", "arch", "engine", *(title for _, title, _ in SUMMARY)]
    cells = [b["name"], arch, b["engine"]]
    cells += [fmt(f[key]) if f.get(key) is not None else "n/a" for key, _, fmt in SUMMARY]
    lines = [
        f"# HIL report: {b['name']}",
        "",
        f"{data['started']}, {data['duration_s']:.0f} s: {c['passed']} passed, "
        f"{c['failed']} failed, {c['skipped']} skipped. Board: {b['connection']}, Python "
        f"{b.get('reported_python') or b['python']}, link {b['link']}.",
        "",
        _row(heads),
        _row(["---"] * len(heads)),
        _row(cells),
        "",
        "| test | outcome | time | note |",
        "| --- | --- | --- | --- |",
    ]
    for t in data["tests"]:
        lines.append(_row([t["name"], t["outcome"], f"{t['duration_s']:.1f} s", t["reason"]]))
    lines += ["", "All figures: hil-report.json (`figures`).", ""]
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
