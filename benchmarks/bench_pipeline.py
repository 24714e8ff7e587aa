"""Pipeline efficiency of hierarchical training on shaped links.

Efficiency = measured run time / max(edge busy, link busy, cloud busy). 1.00 means the three
stages overlap perfectly and the slowest one sets the pace; the target is at most 1.10.
Each scenario is a full run of the demo's system (edge runtime as its own process, cloud trainer,
user-space shaped link, as in the published figures: `link_emulation="user"`), one after the
other in one invocation.

    .venv/bin/python benchmarks/bench_pipeline.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from host.session import SessionOptions, run_session

SCENARIOS = [  # (label, link, codec, data, epochs)
    ("3G, int8 (link-bound)", "3g", "int8", "synthetic:6000", 1),
    ("3G, fp16 (link-bound)", "3g", "fp16", "synthetic:3000", 1),
    ("4G, fp32 (balanced)", "4g", "fp32", "synthetic:6000", 1),
    ("local, fp32 (compute-bound)", "local", "fp32", "synthetic:6000", 2),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, for a smoke run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = Console(width=None if sys.stdout.isatty() else 140)
    quiet = Console(quiet=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, link, codec, data, epochs in SCENARIOS:
            if args.quick:
                data, epochs = "synthetic:1000", 1
            work = Path(tmp) / link / codec
            opts = SessionOptions(
                link=link,
                link_emulation="user",
                codec=codec,
                data=data,
                epochs=epochs,
                work_dir=work,
                edge_log=Path(tmp) / f"{link}-{codec}.log",
            )
            r = run_session(opts, quiet)
            rows.append(
                {
                    "scenario": label,
                    **{
                        k: r[k]
                        for k in (
                            "link",
                            "codec",
                            "data",
                            "epochs",
                            "runtime_s",
                            "edge_busy_s",
                            "link_busy_s",
                            "cloud_busy_s",
                            "bottleneck",
                            "pipeline_efficiency",
                            "bytes_up",
                            "final_accuracy",
                            "edge_exit_accuracy",
                        )
                    },
                }
            )
            out.print(f"{label}: efficiency {r['pipeline_efficiency']:.3f}")
    table = Table(title="pipeline efficiency = runtime / busiest stage (target <= 1.10)")
    for col in (
        "scenario",
        "runtime s",
        "edge busy s",
        "link busy s",
        "cloud busy s",
        "bottleneck",
        "efficiency",
        "MB up",
        "final acc",
    ):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in rows:
        table.add_row(
            r["scenario"],
            f"{r['runtime_s']:.1f}",
            f"{r['edge_busy_s']:.1f}",
            f"{r['link_busy_s']:.1f}",
            f"{r['cloud_busy_s']:.1f}",
            r["bottleneck"],
            f"{r['pipeline_efficiency']:.3f}",
            f"{r['bytes_up'] / 1e6:.2f}",
            f"{100 * (r['final_accuracy'] or 0):.1f}%",
        )
    out.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
