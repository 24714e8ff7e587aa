"""Tail throughput of `hostctl serve --shared-tail --ranks R` with E edges, measured against
`hostctl plan --edges E --ranks R`'s prediction, side by side in one run.

Each cell is one real run on this machine: torchrun with R gloo ranks (`--ranks 1` runs under
torchrun too, so both columns pay the same collectives), E `edge-runtime run` processes
(`--threads 1`) on synthetic data, edge i connected to rank i % R. Tail throughput = samples
the shared tail trained after the first batch / the time from the first trained batch to the last (the
ranks' metrics CSVs).

The prediction is the plan's fleet model (host/plan/fleet.py) on the same split, fed with step
times measured here at one thread (as the ranks and the edges run), once before the cells and
once after (the mean is used: the machine's other load moves them), with the edges colocated
on `--cores` cores (default: this machine's) beside the ranks, over an unshaped loopback link.
The profile is written to `--save-profile` so that `hostctl plan` gives the same figures:

    hostctl plan --model M --splits S --batch-size B --link local --codec fp32 \\
        --profile PROFILE --colocated --host-cores C --edges E --ranks R

    .venv/bin/python benchmarks/bench_ranks.py [--model resnet18 --split 1 --samples 240]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def kill_tree(proc: subprocess.Popen, state: Path) -> None:
    """SIGKILL the launcher's process group (itself and torchrun) and every rank (each rank
    runs in a session of its own: torchrun starts them so)."""
    pids = [int(p.read_text()) for p in (state / "ranks").glob("rank-*.pid")]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    proc.wait()


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
    procs: list[subprocess.Popen] = []
    with open(work / "serve.err", "w") as err:
        serve = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, start_new_session=True
        )
        try:
            ports: dict[int, int] = {}
            while len(ports) < ranks:
                line = serve.stdout.readline()
                if not line:
                    raise SystemExit((work / "serve.err").read_text()[-2000:])
                found = re.search(r"listening on tcp://[\d.]+:(\d+) \(rank (\d+) of", line)
                if found:
                    ports[int(found[2])] = int(found[1])
            for i in range(edges):
                edge = [
                    sys.executable, "-m", "edge_runtime.cli", "run",
                    "--bundle", str(bundle / "edge"),
                    "--connect", f"socket://127.0.0.1:{ports[i % ranks]}",
                    "--work-dir", str(work / f"edge{i}"), "--edge-id", f"cam{i}",
                    "--data", f"synthetic:{args.samples}", "--seed", str(i), "--epochs", "1",
                    "--batch-size", str(args.batch_size), "--threads", "1",
                ]  # fmt: skip
                with open(work / f"edge{i}.log", "w") as log:
                    procs.append(subprocess.Popen(edge, env=ENV, stdout=log, stderr=log))
            for i, p in enumerate(procs):
                if p.wait(timeout=1200) != 0:
                    raise SystemExit((work / f"edge{i}.log").read_text()[-2000:])
            serve.communicate(timeout=600)
        finally:
            # Whatever went wrong, nothing of this cell outlives it.
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if serve.poll() is None:
                kill_tree(serve, work / "state")
    if serve.returncode != 0:
        raise SystemExit((work / "serve.err").read_text()[-2000:])
    trained = []  # (time the tail had trained the batch, its samples)
    for r in range(ranks):
        with open(f"{work / 'metrics.csv'}.rank{r}") as f:
            trained += [(float(row["time"]), int(row["n"])) for row in csv.DictReader(f)]
    trained.sort()
    samples = sum(n for _, n in trained)
    report = json.loads((work / "report.json").read_text())
    span = trained[-1][0] - trained[0][0]
    # The first trained batch marks the start of the span: its samples were trained before it.
    in_span = samples - trained[0][1]
    return {
        "ranks": ranks,
        "edges": edges,
        "samples": samples,
        "span_s": round(span, 2),
        "tail_samples_per_s": round(in_span / span, 1) if span > 0 else None,
        "optimizer_steps": report["ranks"][0]["optimizer_steps"],
        # Wall seconds per synchronised step (steps after the first, over the span).
        "s_per_step": round(span / max(1, report["ranks"][0]["optimizer_steps"] - 1), 2),
        "same_tail": len({r["tail_sha256"] for r in report["ranks"]}) == 1,
    }


def profile_one_thread(bundle: Path, args: argparse.Namespace) -> dict[str, float]:
    """The split's step figures at one thread (edge engine and tail), measured now."""
    from edge_runtime.bundle import load_bundle
    from host.plan.profiling import ProfileSetup, profile_split

    identity = load_bundle(bundle / "edge").identity
    times = profile_split(
        ProfileSetup(
            model=args.model,
            input_shape=tuple(identity["input_shape"]),
            num_classes=identity["num_classes"],
            batch_size=args.batch_size,
            eval_batch_size=args.batch_size,
            threads=1,
            steps=5,
        ),
        bundle,
    )
    from host.plan.board_profile import STEP_FIELDS

    return {k: getattr(times, k) for k in STEP_FIELDS} | times.codecs


def predictions(
    figures: dict[str, float], shape: tuple[int, ...], num_classes: int, args: argparse.Namespace
) -> dict[tuple[int, int], Any]:
    """The plan's fleet model per (edges, ranks), fed as `hostctl plan` feeds it."""
    from host.plan.board_profile import codec_key
    from host.plan.fleet import fleet_plan
    from host.plan.wire import batch_wire_bytes

    out = {}
    for edges in map(int, args.edges.split(",")):
        for ranks in map(int, args.ranks.split(",")):
            out[edges, ranks] = fleet_plan(
                edges=edges,
                ranks=ranks,
                batch_size=args.batch_size,
                edge_s=figures["edge_step_s"] + figures.get(codec_key("fp32", "encode_s"), 0),
                link_s=0.0,  # loopback, unshaped (`--link local`)
                cloud_s=figures["cloud_step_s"] + figures.get(codec_key("fp32", "decode_s"), 0),
                batch_wire_bytes=batch_wire_bytes(shape, args.batch_size, "fp32", num_classes),
                host_cores=args.cores,
                colocated=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--samples", type=int, default=240, help="synthetic samples per edge")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--edges", default="1,2,4,8")
    parser.add_argument(
        "--cores",
        type=float,
        default=float(len(os.sched_getaffinity(0))),
        help="cores the ranks and edges share, for the plan [default: this machine's]",
    )
    parser.add_argument("--save-profile", type=Path, default=None, help="the plan's profile JSON")
    args = parser.parse_args()
    from host.export import ExportOptions, export_bundle
    from host.plan.board_profile import BoardProfile, save_profile, this_machine

    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(ExportOptions(model=args.model, split=args.split), bundle)
        load_before = os.getloadavg()[0]
        before = profile_one_thread(bundle, args)
        rows = []
        for edges in map(int, args.edges.split(",")):
            for ranks in map(int, args.ranks.split(",")):
                rows.append(run_cell(bundle, Path(tmp) / f"r{ranks}e{edges}", ranks, edges, args))
                print(json.dumps(rows[-1]), flush=True)
        after = profile_one_thread(bundle, args)
        load_after = os.getloadavg()[0]
        from edge_runtime.bundle import load_bundle

        identity = load_bundle(bundle / "edge").identity
    shape = tuple(identity["activation_shape"])
    figures = {k: (before[k] + after[k]) / 2 for k in before}
    if args.save_profile is not None:
        save_profile(
            BoardProfile(
                model=args.model,
                batch_size=args.batch_size,
                eval_batch_size=args.batch_size,
                engine="ort",
                source="benchmarks/bench_ranks.py: one thread, mean of before and after the cells",
                measured_on=this_machine(),
                splits={args.split: figures},
            ),
            args.save_profile,
        )
    plans = predictions(figures, shape, identity["num_classes"], args)
    ms = {k: round(1e3 * v, 1) for k, v in figures.items() if k.endswith("step_s")}
    print(
        f"\n{args.model} split {args.split}, batch {args.batch_size}, {args.samples} samples/edge;"
        f" one thread: edge step {ms['edge_step_s']} ms, tail step {ms['cloud_step_s']} ms"
        f" (before {1e3 * before['edge_step_s']:.1f} / {1e3 * before['cloud_step_s']:.1f},"
        f" after {1e3 * after['edge_step_s']:.1f} / {1e3 * after['cloud_step_s']:.1f});"
        f" plan on {args.cores:g} cores, edges colocated; load average {load_before:.1f} before,"
        f" {load_after:.1f} after"
    )
    print(
        "| edges | ranks | samples | span s | measured samples/s | predicted samples/s "
        "| plan binds | measured / predicted | optimizer steps | s per step | same tail |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        plan = plans[r["edges"], r["ranks"]]
        predicted = plan.throughput_samples_per_s
        ratio = r["tail_samples_per_s"] / predicted if r["tail_samples_per_s"] else float("nan")
        print(
            f"| {r['edges']} | {r['ranks']} | {r['samples']} | {r['span_s']} | "
            f"{r['tail_samples_per_s']} | {predicted:.1f} | {plan.binds} | {ratio:.2f} | "
            f"{r['optimizer_steps']} | {r['s_per_step']} | {r['same_tail']} |"
        )


if __name__ == "__main__":
    main()
