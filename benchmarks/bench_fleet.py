"""A fleet on the real digits: accuracy of one edge alone, a shared tail, a shared tail with
front averaging; and what averaging costs on the link against what the activations cost.

The UCI digits' train split (1437 samples) is cut across E edges with non-identical class mixes
(`host.bench.fleet.split_non_iid`: class c sends `--home-share` of its samples to edge c mod E,
the rest evenly to the others); every edge scores on the whole test split (360). Side by side,
in one process (`host.bench.fleet.run_fleet`: real ORT fronts, real link sessions over socket
pairs, one CloudServer):

- alone: each edge with a tail of its own (the mean over the edges);
- shared: one shared tail, each edge its own front;
- averaged (per schedule): one shared tail and the fronts averaged through the host.

Bytes are the reports' counts: activations = the fleet's BATCH + EVAL_BATCH wire bytes up (the
host's bytes_up less the fronts' and the model out's tensor bytes); per round = the fronts'
tensor bytes up and the averages' down, divided by the rounds. Wall time is not reported: the
edges share this process's cores.

    .venv/bin/python benchmarks/bench_fleet.py [--edges 4] [--epochs 4] [--home-share 0.7]
        [--every 1epochs,4batches] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edge_runtime.data import load_dataset
from host.bench.fleet import FleetRun, run_fleet, split_non_iid
from host.export import ExportOptions, export_bundle

DIGITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "digits.csv.gz"


def row(label: str, run: FleetRun) -> dict:
    """One line of the table from a fleet run's reports."""
    host = run.host
    averaging = (host.get("shared_tail") or {}).get("front_averaging")
    model_bytes = sum(e.get("model_bytes_up", 0) for e in run.edges.values())
    fronts_up = averaging["bytes_up"] if averaging else 0
    fronts_down = averaging["bytes_down"] if averaging else 0
    rounds = averaging["version"] if averaging else 0
    return {
        "setting": label,
        "final_accuracy": round(run.final_accuracy(), 4),
        "per_edge_accuracy": [round(e["final_accuracy"], 4) for e in host["edges"]],
        "activation_bytes_up": host["bytes_up"] - fronts_up - model_bytes,
        "rounds": rounds,
        "front_bytes_up_per_round": fronts_up // rounds if rounds else 0,
        "front_bytes_down_per_round": fronts_down // rounds if rounds else 0,
        "front_bytes_total": fronts_up + fronts_down,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DIGITS)
    parser.add_argument("--edges", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--home-share", type=float, default=0.7)
    parser.add_argument("--every", default="1epochs,4batches")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    console = Console(width=160)
    if not args.data.is_file():
        console.print(f"{args.data}: not found (the real digits live in ../shared/data)")
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    bundle = work / "bundle"
    export_bundle(ExportOptions(model="smallcnn", split=2, input_shape=(1, 8, 8), lr=3e-3), bundle)
    parts = split_non_iid(load_dataset(str(args.data), seed=0), args.edges, args.home_share)
    datasets = {f"edge-{k}": p for k, p in enumerate(parts)}
    kw = {"epochs": args.epochs, "batch_size": 32}

    rows = []
    alone = [
        run_fleet(bundle, {e: d}, work / f"alone-{e}", shared_tail=False, **kw)
        for e, d in datasets.items()
    ]
    alone_row = row("alone (own tail)", alone[0])
    alone_row["final_accuracy"] = round(float(np.mean([r.final_accuracy() for r in alone])), 4)
    alone_row["per_edge_accuracy"] = [round(r.final_accuracy(), 4) for r in alone]
    alone_row["activation_bytes_up"] = sum(row("", r)["activation_bytes_up"] for r in alone)
    rows.append(alone_row)
    rows.append(row("shared tail", run_fleet(bundle, datasets, work / "shared", **kw)))
    for every in args.every.split(","):
        run = run_fleet(bundle, datasets, work / f"avg-{every}", average_every=every, **kw)
        rows.append(row(f"shared tail, averaged every {every}", run))

    table = Table(
        title=f"{args.edges} edges, digits, {args.epochs} epochs, home share {args.home_share}"
    )
    for col in (
        "setting",
        "accuracy",
        "per edge",
        "activations up (MB)",
        "rounds",
        "front up/round (kB)",
        "avg down/round (kB)",
        "averaging / activations",
    ):
        table.add_column(col)
    for r in rows:
        ratio = r["front_bytes_total"] / r["activation_bytes_up"] if r["rounds"] else 0
        table.add_row(
            r["setting"],
            f"{r['final_accuracy']:.3f}",
            " ".join(f"{a:.3f}" for a in r["per_edge_accuracy"]),
            f"{r['activation_bytes_up'] / 1e6:.2f}",
            str(r["rounds"]),
            f"{r['front_bytes_up_per_round'] / 1e3:.1f}",
            f"{r['front_bytes_down_per_round'] / 1e3:.1f}",
            f"{ratio:.3f}" if r["rounds"] else "-",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
