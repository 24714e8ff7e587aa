"""Tail throughput of `hostctl serve --shared-tail --ranks R` with E edges, side by side.

Each cell is one real run on this machine: torchrun with R gloo ranks (`--ranks 1` runs under
torchrun too, so both columns pay the same collectives), E `edge-runtime run` processes on
synthetic data, edge i connected to rank i % R. Tail throughput = samples the shared tail
trained / the time from its first trained batch to its last (the ranks' metrics CSVs).

    .venv/bin/python benchmarks/bench_ranks.py [--model resnet18 --split 1 --samples 240]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_cell(bundle: Path, work: Path, ranks: int, edges: int, args: argparse.Namespace) -> dict:
    """One run: R ranks, E edges; returns its figures."""
    work.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", "host.cli", "serve", "--bundle", str(bundle),
        "--listen", "tcp://127.0.0.1:0", "--shared-tail", "--ranks", str(ranks),
        "--state-dir", str(work / "state"), "--report", str(work / "report.json"),
        "--metrics-csv", str(work / "metrics.csv"), "--checkpoint-every", "20",
        "--exit-when-done", "--expect-edges", str(edges), "--max-restarts", "0",
    ]  # fmt: skip
    with open(work / "serve.err", "w") as err:
        serve = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)
        ports: dict[int, int] = {}
        while len(ports) < ranks:
            line = serve.stdout.readline()
            if not line:
                raise SystemExit((work / "serve.err").read_text()[-2000:])
            found = re.search(r"listening on tcp://[\d.]+:(\d+) \(rank (\d+) of", line)
            if found:
                ports[int(found[2])] = int(found[1])
        procs = []
        for i in range(edges):
            edge = [
                sys.executable, "-m", "edge_runtime.cli", "run",
                "--bundle", str(bundle / "edge"),
                "--connect", f"socket://127.0.0.1:{ports[i % ranks]}",
                "--work-dir", str(work / f"edge{i}"), "--edge-id", f"cam{i}",
                "--data", f"synthetic:{args.samples}", "--seed", str(i), "--epochs", "1",
                "--batch-size", str(args.batch_size), "--threads", "1",
            ]  # fmt: skip
            log = open(work / f"edge{i}.log", "w")  # noqa: SIM115 - the child keeps it
            procs.append(subprocess.Popen(edge, env=ENV, stdout=log, stderr=log))
        for i, p in enumerate(procs):
            if p.wait() != 0:
                serve.kill()
                raise SystemExit((work / f"edge{i}.log").read_text()[-2000:])
        serve.communicate(timeout=600)
    if serve.returncode != 0:
        raise SystemExit((work / "serve.err").read_text()[-2000:])
    times, samples = [], 0
    for r in range(ranks):
        with open(f"{work / 'metrics.csv'}.rank{r}") as f:
            for row in csv.DictReader(f):
                times.append(float(row["time"]))
                samples += int(row["n"])
    report = json.loads((work / "report.json").read_text())
    span = max(times) - min(times)
    return {
        "ranks": ranks,
        "edges": edges,
        "samples": samples,
        "span_s": round(span, 2),
        "tail_samples_per_s": round(samples / span, 1) if span > 0 else None,
        "optimizer_steps": report["ranks"][0]["optimizer_steps"],
        "same_tail": len({r["tail_sha256"] for r in report["ranks"]}) == 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--samples", type=int, default=240, help="synthetic samples per edge")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--edges", default="1,2,4")
    args = parser.parse_args()
    from host.export import ExportOptions, export_bundle

    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(ExportOptions(model=args.model, split=args.split), bundle)
        rows = []
        for edges in map(int, args.edges.split(",")):
            for ranks in map(int, args.ranks.split(",")):
                rows.append(run_cell(bundle, Path(tmp) / f"r{ranks}e{edges}", ranks, edges, args))
                print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{args.model} split {args.split}, batch {args.batch_size}, {args.samples} samples/edge"
    )
    print("| edges | ranks | samples | span s | tail samples/s | optimizer steps | same tail |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['edges']} | {r['ranks']} | {r['samples']} | {r['span_s']} | "
            f"{r['tail_samples_per_s']} | {r['optimizer_steps']} | {r['same_tail']} |"
        )


if __name__ == "__main__":
    main()
