"""What our side can change about the ort engine's training step, against torch's, one run.

    .venv/bin/python benchmarks/bench_ort_speed.py [--steps N] [--json PATH]

ResNet-18 split 4, 3x32x32, 10 classes, batch 32 unless a variant says otherwise: one bundle,
exported once. Each variant is a fresh interpreter (`--child`) that builds the engine, warms it
up and times ``--steps`` training steps (median). The knobs are the ones our code sets
(edge_runtime/engines/ort_engine.py: session_options) or could set:

* intra-op threads (1 or the 2 cores),
* the session's graph optimization level (disabled, basic, extended, all: ours is all),
* the intra-op pool's spinning (on by default in ORT: idle workers spin before sleeping; ours
  is off since this benchmark measured it),
* inter-op parallelism (parallel execution mode, 2 inter-op threads),
* the batch shape (16, 32, 64 samples a step).

The machine is shared (other jobs, a compile at nice 19): the variants run in one pass, each ort
variant between two torch runs of the same threads and batch, and every figure is reported as a
ratio to those two torch figures averaged (``ort/torch``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# (label, knobs) of each ort variant; knobs are the child's session options and the batch.
ORT_VARIANTS: list[tuple[str, dict]] = [
    ("ort as shipped (2 threads, all optimizations, no spinning)", {"threads": 2}),
    ("ort, graph optimizations disabled", {"threads": 2, "level": "DISABLE_ALL"}),
    ("ort, basic optimizations", {"threads": 2, "level": "ENABLE_BASIC"}),
    ("ort, extended optimizations", {"threads": 2, "level": "ENABLE_EXTENDED"}),
    ("ort, spinning on (ORT's default)", {"threads": 2, "spin": True}),
    ("ort, parallel execution, 2 inter-op", {"threads": 2, "parallel": True}),
    ("ort, 1 thread", {"threads": 1}),
    ("ort, 1 thread, spinning on", {"threads": 1, "spin": True}),
    ("ort, batch 16", {"threads": 2, "batch": 16}),
    ("ort, batch 64", {"threads": 2, "batch": 64}),
]


def sequence(only: str | None = None) -> list[tuple[str, str, dict]]:
    """torch, ort variant, torch, ort variant, ..., torch: every ort run between two torch runs
    of the same threads and batch, so that its ratio is to torch measured right beside it.
    ``only``: comma-separated numbers (1-based) of the ORT_VARIANTS to run."""
    chosen = ORT_VARIANTS
    if only:
        chosen = [ORT_VARIANTS[int(n) - 1] for n in only.split(",")]
    out: list[tuple[str, str, dict]] = []
    for label, knobs in chosen:
        torch_knobs = {k: v for k, v in knobs.items() if k in ("threads", "batch")}
        torch_label = f"torch, {torch_knobs['threads']} thread(s), batch {knobs.get('batch', 32)}"
        if not out or out[-1][2] != torch_knobs:
            out.append((torch_label, "torch", torch_knobs))
        out.append((label, "ort", knobs))
        out.append((torch_label, "torch", torch_knobs))
    return out


def session_options_with(knobs: dict):  # -> a session_options(threads) replacement
    """ort_engine.session_options, with the variant's knobs applied over ours."""
    import onnxruntime as ort

    from edge_runtime.engines import ort_engine

    shipped = ort_engine.session_options

    def options(threads: int | None):
        opts = shipped(threads)
        if "level" in knobs:
            opts.graph_optimization_level = getattr(
                ort.GraphOptimizationLevel, f"ORT_{knobs['level']}"
            )
        if "spin" in knobs:  # ours is off
            opts.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if knobs["spin"] else "0"
            )
        if knobs.get("parallel"):
            opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            opts.inter_op_num_threads = 2
        return opts

    return options


def run_child(engine_name: str, bundle_dir: Path, knobs: dict, warmup: int, steps: int) -> int:
    """Time one variant; prints one BENCH-RESULT line."""
    import numpy as np

    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import make_engine

    if engine_name == "ort":
        from edge_runtime.engines import ort_engine

        ort_engine.session_options = session_options_with(knobs)
    engine = make_engine(engine_name, load_bundle(bundle_dir), threads=knobs["threads"])
    batch = knobs.get("batch", 32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch, dtype=np.int64)
    for _ in range(warmup):
        engine.train_step(x, y)
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        engine.train_step(x, y)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    result = {"step_s": statistics.median(times), "cpu_s": statistics.median(cpu)}
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


def spawn(engine: str, bundle_dir: Path, knobs: dict, args: argparse.Namespace) -> dict:
    """One variant in a fresh interpreter."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        engine,
        "--bundle",
        str(bundle_dir),
        "--knobs",
        json.dumps(knobs),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    raise SystemExit(f"{engine} {knobs} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


def torch_beside(rows: list[dict], i: int, key: str = "step_s") -> float | None:
    """Torch's ``key`` (wall or CPU seconds a step) of the same threads and batch, nearest before
    and after row ``i``, averaged."""
    me = rows[i]
    near = []
    for step in (-1, 1):
        j = i + step
        while 0 <= j < len(rows):
            r = rows[j]
            if (
                r["engine"] == "torch"
                and r["threads"] == me["threads"]
                and r["batch"] == me["batch"]
            ):
                near.append(r[key])
                break
            j += step
    return sum(near) / len(near) if near else None


def table(rows: list[dict]) -> str:
    """Markdown: each run's wall and CPU milliseconds a step, and each ort run's ratios to the
    torch runs beside it (sets ``ort_over_torch`` and ``cpu_ort_over_torch`` on the rows)."""
    lines = [
        "| variant | ms a step | CPU ms a step | ort / torch (wall) | ort / torch (CPU) |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        cells = ["", ""]
        if r["engine"] == "ort":
            for n, (key, out) in enumerate(
                (("step_s", "ort_over_torch"), ("cpu_s", "cpu_ort_over_torch"))
            ):
                base = torch_beside(rows, i, key)
                r[out] = r[key] / base if base else None
                cells[n] = f"{r[out]:.2f}" if base else ""
        lines.append(
            f"| {r['variant']} | {r['step_s'] * 1e3:.0f} | {r['cpu_s'] * 1e3:.0f} | "
            f"{cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Export once, run every variant in order, print the table of ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("ort", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--knobs", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated numbers of the ort variants to run: "
        + "; ".join(f"{i} {label}" for i, (label, _) in enumerate(ORT_VARIANTS, 1)),
    )
    args = parser.parse_args()
    if args.child:
        return run_child(args.child, args.bundle, json.loads(args.knobs), args.warmup, args.steps)

    from host.export import ExportOptions, export_bundle

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(ExportOptions(model="resnet18", split=4, validate=False), bundle)
        for label, engine, knobs in sequence(args.only):
            r = spawn(engine, bundle / "edge", knobs, args)
            rows.append(
                {
                    "variant": label,
                    "engine": engine,
                    "threads": knobs["threads"],
                    "batch": knobs.get("batch", 32),
                    **r,
                }
            )
            print(f"{label}: {r['step_s'] * 1e3:.0f} ms a step", flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
