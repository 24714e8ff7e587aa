"""Benchmark: bundle export time, and the `ort` engine against the `torch` engine.

    .venv/bin/python benchmarks/bench_engines.py [--quick] [--json PATH]

1. Export time (`export_bundle`) per zoo model (resnet18, vgg16, smallcnn) at split 4,
   3x32x32 input, 10 classes; median over repeats.
2. ResNet-18 split 4, batch 32, 3x32x32: one training step of each engine over the same bundle,
   median over N steps after warm-up, and memory. Each engine runs in a fresh subprocess
   (`--child ENGINE`), so that the ort process never has torch or onnx loaded (the ort engine
   imports neither) and each process's RSS high-water mark (VmHWM / ru_maxrss) is its own.
   The child reports RSS right after engine creation (baseline) and the high-water mark after
   training (peak).
3. The engines' subprocesses are interleaved (ort, torch, torch, ort, ...: the order alternates
   each round so that neither engine always runs first) to spread the noise of a shared machine
   over both; times are medians over all rounds' steps, memory the median over rounds.

The ratios (ort/torch) are computed from the same run. The ort child also times the per-step
BatchNorm running-stat write-back (`state.parameters[name].data = value`) on its own.

Nothing here imports torch in the parent before the children ran except the export section,
which needs it; the children are separate interpreters either way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXPORT_MODELS = ("resnet18", "vgg16", "smallcnn")
SPLIT = 4
INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
ENGINES = ("ort", "torch")


# ---------------------------------------------------------------------------------------------
# child: one engine in a fresh interpreter


def _proc_status() -> dict[str, int]:
    """VmRSS / VmHWM (kB) and Threads from /proc/self/status (Linux); empty elsewhere."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _maxrss_mb() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024


def _engine_threads(engine) -> int:
    if engine.name == "ort":
        from edge_runtime.engines.ort_engine import session_options

        return int(session_options(engine._threads).intra_op_num_threads)
    import torch  # already loaded by the torch engine

    return int(torch.get_num_threads())


def _bn_writeback_ms(engine, x, y, repeats: int = 200) -> float | None:
    """Median cost of the ort engine's per-step BatchNorm running-stat write-back alone."""
    if engine.name != "ort" or not engine._bn_updates:
        return None
    engine._module.train()
    outputs = engine._module(x, y)
    engine._module.lazy_reset_grad()  # forward+backward without an optimizer step
    values = list(outputs[3:])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for (param, _), value in zip(engine._bn_updates, values, strict=True):
            engine._state.parameters[param].data = value
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def run_child(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import make_engine

    before = _proc_status()
    bundle = load_bundle(args.bundle)
    t0 = time.perf_counter()
    engine = make_engine(args.child, bundle, threads=args.threads)
    create_s = time.perf_counter() - t0
    created = _proc_status()

    rng = np.random.default_rng(0)
    c, h, w = bundle.manifest["input_shape"]
    classes = bundle.manifest["num_classes"]
    batches = [
        (
            rng.standard_normal((args.batch, c, h, w), dtype=np.float32),
            rng.integers(0, classes, args.batch, dtype=np.int64),
        )
        for _ in range(4)
    ]
    for i in range(args.warmup):
        engine.train_step(*batches[i % len(batches)])
    times, cpu_times = [], []
    loss = float("nan")
    for i in range(args.steps):
        x, y = batches[i % len(batches)]
        t, c = time.perf_counter(), time.process_time()
        loss = engine.train_step(x, y).loss
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    trained = _proc_status()
    maxrss = _maxrss_mb()
    bn_ms = _bn_writeback_ms(engine, *batches[0])

    result = {
        "engine": engine.name,
        "threads": _engine_threads(engine),
        "os_threads": trained.get("Threads"),
        "create_s": create_s,
        "step_s": times,
        "step_cpu_s": cpu_times,
        "last_loss": loss,
        "rss_before_mb": _mb(before.get("VmRSS")),
        "rss_after_create_mb": _mb(created.get("VmRSS")),
        "hwm_after_create_mb": _mb(created.get("VmHWM")),
        "peak_rss_mb": _mb(trained.get("VmHWM")) or maxrss,
        "ru_maxrss_mb": maxrss,
        "bn_writeback_ms": bn_ms,
        "torch_loaded": "torch" in sys.modules,
        "onnx_loaded": "onnx" in sys.modules,
    }
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# parent


def bench_export(models, repeats: int, workdir: Path) -> list[dict]:
    """Time export_bundle per model; the first export of a process also pays torch/onnx warm-up,
    so one untimed export of the smallest model runs first."""
    from host.export.bundle_writer import ExportOptions, export_bundle

    def opts(model: str) -> ExportOptions:
        # Repeats replace the same directory; the figures are the export alone, as before
        # export validated (validation is timed on its own in bench_export_validate.py).
        return ExportOptions(
            model=model,
            split=SPLIT,
            input_shape=INPUT_SHAPE,
            num_classes=NUM_CLASSES,
            force=True,
            validate=False,
        )

    export_bundle(opts("smallcnn"), workdir / "warmup")
    rows = []
    for model in models:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            export_bundle(opts(model), workdir / f"{model}-split{SPLIT}")
            times.append(time.perf_counter() - t0)
        edge = workdir / f"{model}-split{SPLIT}" / "edge"
        size = sum(f.stat().st_size for f in edge.iterdir() if f.is_file())
        rows.append(
            {
                "model": model,
                "split": SPLIT,
                "export_s_median": statistics.median(times),
                "export_s": times,
                "edge_bundle_mb": size / 1e6,
            }
        )
    return rows


def _spawn(engine: str, bundle: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        engine,
        "--bundle",
        str(bundle),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    raise RuntimeError(
        f"{engine} child failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    )


def bench_engines(bundle: Path, args: argparse.Namespace, log) -> dict:
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for r in range(args.rounds):
        order = ENGINES if r % 2 == 0 else ENGINES[::-1]
        for engine in order:
            res = _spawn(engine, bundle, args)
            runs[engine].append(res)
            log(
                f"  round {r + 1}/{args.rounds} {engine:5s}: "
                f"median {statistics.median(res['step_s']) * 1e3:7.1f} ms/step, "
                f"peak RSS {res['peak_rss_mb']:6.1f} MB"
            )
    summary = {}
    for engine, results in runs.items():
        steps = [t for res in results for t in res["step_s"]]
        round_medians = [statistics.median(res["step_s"]) for res in results]
        summary[engine] = {
            "step_ms_median": statistics.median(steps) * 1e3,
            "step_ms_min": min(steps) * 1e3,
            "round_medians_ms": [m * 1e3 for m in round_medians],
            "step_cpu_ms_median": statistics.median(t for res in results for t in res["step_cpu_s"])
            * 1e3,
            "samples_per_s": args.batch / statistics.median(steps),
            "rss_after_create_mb": statistics.median(r["rss_after_create_mb"] for r in results),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
            "ru_maxrss_mb": statistics.median(r["ru_maxrss_mb"] for r in results),
            "create_s": statistics.median(r["create_s"] for r in results),
            "threads": results[0]["threads"],
            "os_threads": results[0]["os_threads"],
            "torch_loaded": any(r["torch_loaded"] for r in results),
            "onnx_loaded": any(r["onnx_loaded"] for r in results),
            "bn_writeback_ms": (
                statistics.median(r["bn_writeback_ms"] for r in results)
                if results[0]["bn_writeback_ms"] is not None
                else None
            ),
            "runs": results,
        }
    ort, torch_ = summary["ort"], summary["torch"]
    # Ratio of the per-round medians of each adjacent ort/torch pair, then the median of those:
    # less sensitive to a slow stretch of the shared machine than the ratio of global medians.
    pair_ratios = [
        o / t for o, t in zip(ort["round_medians_ms"], torch_["round_medians_ms"], strict=True)
    ]
    summary["ratios"] = {
        "time_ort_over_torch": ort["step_ms_median"] / torch_["step_ms_median"],
        "time_ort_over_torch_paired_median": statistics.median(pair_ratios),
        "time_pair_ratios": pair_ratios,
        "peak_rss_ort_over_torch": ort["peak_rss_mb"] / torch_["peak_rss_mb"],
        "baseline_rss_ort_over_torch": ort["rss_after_create_mb"] / torch_["rss_after_create_mb"],
    }
    return summary


def _print_tables(export_rows, engines, args) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text fallback
        Console = None  # noqa: N806

    def table(title, columns, rows):
        if Console is not None:
            t = Table(title=title)
            for col in columns:
                t.add_column(col, justify="left" if col == columns[0] else "right")
            for row in rows:
                t.add_row(*row)
            Console(width=140).print(t)
        else:
            print(f"\n{title}")
            widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
            print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            for row in rows:
                print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))

    if export_rows:
        table(
            f"export_bundle, split {SPLIT}, {'x'.join(map(str, INPUT_SHAPE))}, "
            f"{NUM_CLASSES} classes (median of {args.export_repeats})",
            ["model", "export s (median)", "all runs s", "edge files MB"],
            [
                [
                    r["model"],
                    f"{r['export_s_median']:.2f}",
                    " ".join(f"{t:.2f}" for t in r["export_s"]),
                    f"{r['edge_bundle_mb']:.1f}",
                ]
                for r in export_rows
            ],
        )
    if engines:
        rows = []
        for name in ENGINES:
            s = engines[name]
            rows.append(
                [
                    name,
                    f"{s['step_ms_median']:.1f}",
                    f"{s['step_ms_min']:.1f}",
                    " ".join(f"{m:.0f}" for m in s["round_medians_ms"]),
                    f"{s['step_cpu_ms_median']:.0f}",
                    f"{s['samples_per_s']:.0f}",
                    f"{s['rss_after_create_mb']:.0f}",
                    f"{s['peak_rss_mb']:.0f}",
                    f"{s['threads']} ({s['os_threads']})",
                    "yes" if s["torch_loaded"] else "no",
                ]
            )
        table(
            f"train step, resnet18 split {SPLIT}, batch {args.batch}, "
            f"{'x'.join(map(str, INPUT_SHAPE))}: {args.rounds} interleaved rounds x "
            f"{args.steps} steps after {args.warmup} warm-up, fresh process each",
            [
                "engine",
                "median ms",
                "min ms",
                "round medians ms",
                "CPU ms/step",
                "samples/s",
                "RSS after create MB",
                "peak RSS MB",
                "threads (OS)",
                "torch loaded",
            ],
            rows,
        )
        r = engines["ratios"]
        print(
            f"ort/torch step time: {r['time_ort_over_torch']:.2f} (all steps' medians), "
            f"{r['time_ort_over_torch_paired_median']:.2f} (median of per-round pairs: "
            f"{' '.join(f'{p:.2f}' for p in r['time_pair_ratios'])})"
        )
        print(
            f"ort/torch peak RSS: {r['peak_rss_ort_over_torch']:.2f}; "
            f"RSS after create: {r['baseline_rss_ort_over_torch']:.2f}"
        )
        bn = engines["ort"]["bn_writeback_ms"]
        if bn is not None:
            share = bn / engines["ort"]["step_ms_median"] * 100
            print(
                f"ort BatchNorm running-stat write-back: {bn:.3f} ms/step ({share:.3f}% of a step)"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rounds, steps and repeats")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--rounds", type=int, help="interleaved rounds per engine (default 4; quick 2)")
    p.add_argument("--steps", type=int, help="timed steps per run (default 20; quick 8)")
    p.add_argument("--warmup", type=int, help="untimed steps per run (default 5; quick 3)")
    p.add_argument("--export-repeats", type=int, help="exports per model (default 3; quick 1)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, help="engine threads (default: all cores)")
    p.add_argument("--skip-export", action="store_true")
    p.add_argument("--skip-engines", action="store_true")
    p.add_argument("--bundle", type=Path, help="(child, or reuse an existing resnet18 bundle)")
    p.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (2 if q else 4)
    args.steps = args.steps or (8 if q else 20)
    args.warmup = args.warmup if args.warmup is not None else (3 if q else 5)
    args.export_repeats = args.export_repeats or (1 if q else 3)

    if args.child:
        return run_child(args)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(
        f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
        },
        "settings": {
            k: getattr(args, k)
            for k in ("quick", "rounds", "steps", "warmup", "export_repeats", "batch", "threads")
        },
    }
    with tempfile.TemporaryDirectory(prefix="hiertrain-bench-") as tmp:
        workdir = Path(tmp)
        export_rows = []
        if not args.skip_export:
            log("exporting bundles ...")
            export_rows = bench_export(EXPORT_MODELS, args.export_repeats, workdir)
        results["export"] = export_rows
        engines = None
        if not args.skip_engines:
            bundle = args.bundle
            if bundle is None:
                bundle = workdir / f"resnet18-split{SPLIT}"
                if not (bundle / "manifest.json").is_file():
                    from host.export.bundle_writer import ExportOptions, export_bundle

                    export_bundle(
                        ExportOptions(
                            model="resnet18",
                            split=SPLIT,
                            input_shape=INPUT_SHAPE,
                            num_classes=NUM_CLASSES,
                        ),
                        bundle,
                    )
            edge = bundle / "edge" if (bundle / "edge").is_dir() else bundle
            log(f"engines on {edge} ...")
            engines = bench_engines(edge, args, log)
            results["engines"] = engines
    results["machine"]["loadavg_end"] = os.getloadavg()
    _print_tables(export_rows, engines, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
