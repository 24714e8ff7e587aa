"""`hostctl demo --infer`: after the demo's training, the trained model answers the test split,
the board (a separate process) at its exit and the host with its tail, over local TCP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console

from edge_runtime.bundle import KEY_FILE, read_key_file
from edge_runtime.cli import infer_argv
from edge_runtime.command_line import own_module_argv
from edge_runtime.errors import HiertrainError
from host.infer.server import InferServer


class InferDemoFailed(HiertrainError, RuntimeError):
    """The inference edge process failed."""


def run_infer_demo(model_dir: Path, data: str, work: Path, console: Console) -> dict[str, Any]:
    """Serve the model's tail, run `edge-runtime infer` against it; returns the edge's report."""
    server = InferServer(model_dir, key=read_key_file(model_dir / KEY_FILE))
    host, port = server.serve_tcp("127.0.0.1", 0)
    report = work / "infer.json"
    cmd = infer_argv(
        own_module_argv("edge_runtime.launch"),
        model_dir=model_dir,
        url=f"socket://{host}:{port}",
        data_spec=data,
        report_path=report,
    )
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        server.close()
    if done.returncode != 0:
        raise InferDemoFailed(
            f"edge-runtime infer exited with {done.returncode}: {done.stderr.strip()[-300:]}"
        )
    result = json.loads(report.read_text())
    lat = result["latency_ms"]
    console.print(
        f"inference: {result['samples']} samples, {100 * result['fraction_at_edge']:.1f}% answered "
        f"at the edge, accuracy {100 * result['accuracy']:.1f}%, latency p50 {lat['p50']:.1f} ms "
        f"p95 {lat['p95']:.1f} ms, {result['bytes_up'] / 1e3:.1f} kB up"
    )
    return result
