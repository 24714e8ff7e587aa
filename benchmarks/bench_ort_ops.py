"""Where the ort engine's training step goes, per operator, at 1 and 2 threads, beside torch's.

    .venv/bin/python benchmarks/bench_ort_ops.py [--steps N] [--json PATH] [--model M --split K]

ResNet-18 split 4 (front + exit head) unless said, 3x32x32, batch 32: the step of benchmarks/
bench_ort_speed.py. Each run is a fresh interpreter. The ort side trains with ORT's own profiler
on (SessionOptions.enable_profiling: every kernel's time, per run); the torch side with
torch.profiler (self CPU time of each aten op). Both sort their operators into the same classes
(convolution forward, convolution backward, batch norm forward and backward, the rest) and
take the median over the timed steps, so the table says which class keeps ORT from gaining what
torch gains from a second thread. ORT runs twice: on the training model as our export writes it
(host/export/onnx_artifacts.py's GRAPH_REWRITES applied) and as ORT's generate_artifacts wrote
it, so each rewrite is measured beside the graph it replaces.

The ORT Module is opened without its eval model and the optimizer a second later: ORT names a
profile by its prefix and the second it started, and sessions opened in the same second would
write over each other's file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLASSES = ("conv forward", "conv backward", "batchnorm forward", "batchnorm backward", "other")
ORT_CLASS = {
    "Conv": "conv forward",
    "FusedConv": "conv forward",
    "ConvGrad": "conv backward",
    "BatchNormInternal": "batchnorm forward",
    "BatchNormalization": "batchnorm forward",
    "BatchNormalizationGrad": "batchnorm backward",
}
TORCH_CLASS = {
    "aten::mkldnn_convolution": "conv forward",
    "aten::thnn_conv2d": "conv forward",
    "aten::_slow_conv2d_forward": "conv forward",
    "aten::convolution_backward": "conv backward",
    "aten::mkldnn_convolution_backward": "conv backward",
    "aten::_slow_conv2d_backward": "conv backward",
    "aten::native_batch_norm": "batchnorm forward",
    "aten::_batch_norm_impl_index": "batchnorm forward",
    "aten::native_batch_norm_backward": "batchnorm backward",
}


def _batch():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, 32, dtype=np.int64)
    return x, y


def _json_documents(text: str) -> list:
    """Every JSON document in `text` (a profile file may hold more than one)."""
    decoder, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        doc, i = decoder.raw_decode(text, i)
        out.append(doc)


def ort_child(edge_dir: Path, threads: int, warmup: int, steps: int, tmp: Path) -> dict:
    """Per-class kernel milliseconds of each timed training run, and the step's wall time."""
    import onnxruntime as ort
    from onnxruntime.training import api

    from edge_runtime.engines.ort_engine import session_options

    ort.set_default_logger_severity(3)
    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / f"ort{threads}")
    state = api.CheckpointState.load_checkpoint(str(edge_dir / "checkpoint"))
    module = api.Module(str(edge_dir / "training_model.onnx"), state, None, "cpu", opts)
    time.sleep(1.1)  # the optimizer's session profiles to a file of another second
    optimizer = api.Optimizer(str(edge_dir / "optimizer_model.onnx"), module)
    x, y = _batch()
    walls = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        module.train()
        module(x, y)
        optimizer.step()
        module.lazy_reset_grad()
        if i >= warmup:
            walls.append(time.perf_counter() - t)
    del optimizer, module  # a session writes its profile when it closes
    import gc

    gc.collect()
    runs: list[dict[str, float]] = []
    for path in sorted(tmp.glob(f"ort{threads}_*.json")):
        for doc in _json_documents(path.read_text()):
            windows = [
                (e["ts"], e["ts"] + e["dur"])
                for e in doc
                if e.get("cat") == "Session" and e.get("name") == "model_run"
            ]
            nodes = [
                e for e in doc if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            ]
            if not any(e["args"].get("op_name") == "ConvGrad" for e in nodes):
                continue  # the optimizer's session
            for start, end in windows:
                per: dict[str, float] = defaultdict(float)
                by_op: dict[str, float] = defaultdict(float)
                for e in nodes:
                    if start <= e["ts"] <= end:
                        op = e["args"].get("op_name")
                        per[ORT_CLASS.get(op, "other")] += e["dur"] / 1e3
                        by_op[op] += e["dur"] / 1e3
                runs.append((per, by_op))
    timed = runs[warmup:]
    if len(timed) < steps:
        raise SystemExit(f"ORT's profile held {len(runs)} training runs, {warmup + steps} ran")
    ops = {op for _, by_op in timed for op in by_op}
    return {
        "step_ms": 1e3 * statistics.median(walls),
        "classes": {c: statistics.median(r.get(c, 0.0) for r, _ in timed) for c in CLASSES},
        "ops": {op: statistics.median(b.get(op, 0.0) for _, b in timed) for op in ops},
    }


def torch_child(edge_dir: Path, threads: int, warmup: int, steps: int) -> dict:
    """Per-class self CPU milliseconds a step (torch.profiler), and the step's wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import make_engine

    torch.set_num_threads(threads)
    engine = make_engine("torch", load_bundle(edge_dir), threads=threads)
    x, y = _batch()
    for _ in range(warmup):
        engine.train_step(x, y)
    walls, runs = [], []
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            engine.train_step(x, y)
            walls.append(time.perf_counter() - t)
        per: dict[str, float] = defaultdict(float)
        for event in prof.key_averages():
            per[TORCH_CLASS.get(event.key, "other")] += event.self_cpu_time_total / 1e3
        runs.append(per)
    return {
        "step_ms": 1e3 * statistics.median(walls),
        "classes": {c: statistics.median(r.get(c, 0.0) for r in runs) for c in CLASSES},
    }


def spawn(engine: str, edge_dir: Path, threads: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine]
    cmd += ["--edge-dir", str(edge_dir), "--threads", str(threads)]
    cmd += ["--warmup", str(args.warmup), "--steps", str(args.steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    raise SystemExit(f"{engine} at {threads} thread(s) failed: {proc.stderr[-2000:]}")


ENGINES = ("ort", "ort, ORT's graph", "torch")


def table(results: dict) -> str:
    """One row per class: each engine's ms at 1 and 2 threads and its speed-up."""
    head = ["class"]
    for engine in ENGINES:
        head += [f"{engine} 1 thr ms", f"{engine} 2 thr ms", f"{engine} 1->2"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in (*CLASSES, "step (wall)"):
        cells = [c]
        for engine in ENGINES:
            one, two = (
                results[engine][t]["step_ms"]
                if c == "step (wall)"
                else results[engine][t]["classes"][c]
                for t in (1, 2)
            )
            cells += [f"{one:.1f}", f"{two:.1f}", f"{one / two:.2f}x" if two > 0 else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for t in (1, 2):
        torch_ms = results["torch"][t]["step_ms"]
        ratios = ", ".join(f"{e} {results[e][t]['step_ms'] / torch_ms:.2f}" for e in ENGINES[:2])
        lines.append(f"\n{t} thread(s), step time / torch's: {ratios}")
    return "\n".join(lines)


def other_table(results: dict, top: int = 8) -> str:
    """ORT's operators outside the conv and batch norm classes, the costliest first, in ORT's
    own graph and in ours."""
    lines = [
        "| ort operator ('other') | graph | 1 thr ms | 2 thr ms | 1->2 |",
        "|---|---|---|---|---|",
    ]
    for engine in ENGINES[:2]:
        one, two = results[engine][1]["ops"], results[engine][2]["ops"]
        rest = sorted((op for op in one if ORT_CLASS.get(op) is None), key=lambda op: -one[op])
        for op in rest[:top]:
            a, b = one[op], two.get(op, 0.0)
            speedup = f"{a / b:.2f}x" if b else "-"
            lines.append(f"| {op} | {engine} | {a:.1f} | {b:.1f} | {speedup} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("ort", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--edge-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", default="resnet18", help="a zoo model [resnet18]")
    parser.add_argument("--split", type=int, default=4, help="its cut [4]")
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            if args.child == "ort":
                out = ort_child(args.edge_dir, args.threads, args.warmup, args.steps, Path(tmp))
            else:
                out = torch_child(args.edge_dir, args.threads, args.warmup, args.steps)
        print("BENCH-RESULT " + json.dumps(out), flush=True)
        return 0

    from host.export import ExportOptions, export_bundle, onnx_artifacts

    results: dict = {engine: {} for engine in ENGINES}
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours", Path(tmp) / "theirs"
        options = {"model": args.model, "split": args.split, "validate": False}
        export_bundle(ExportOptions(**options), ours)
        onnx_artifacts.GRAPH_REWRITES = {}  # the training model as generate_artifacts wrote it
        export_bundle(ExportOptions(**options), theirs)
        # Per thread count, the three one after the other, so each is measured beside the rest.
        for threads in (1, 2):
            for engine, child, bundle in (
                ("torch", "torch", ours),
                ("ort, ORT's graph", "ort", theirs),
                ("ort", "ort", ours),
            ):
                r = spawn(child, bundle / "edge", threads, args)
                results[engine][threads] = r
                print(f"{engine}, {threads} thread(s): {r['step_ms']:.0f} ms a step", flush=True)
    print(table(results))
    print(other_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
