"""A short hierarchical run in one process, ended with its model out.

The model tests and benchmarks/bench_infer.py need a trained model directory made the way a real
run makes one: the ORT engine trains the front on the edge's side of a real link (a socket pair),
the CloudServer trains the tail, the edge sends its weights at the end, and `model_out` writes
and validates edge.onnx / tail.onnx / full.onnx. One place does that for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.bundle import load_bundle
from edge_runtime.data import load_dataset
from edge_runtime.engines import make_engine
from edge_runtime.link import LinkConfig
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from host.cloud.edge_state import EdgeState
from host.cloud.server import CloudServer
from host.model.collect import held_out_samples, model_out, parts_from_state
from host.model.validate import ModelCheckFailed


@dataclass
class InProcessRun:
    """What a finished in-process run left: both sides' reports, the host's state of the edge,
    the model directory and the lines its validation printed."""

    edge_report: dict[str, Any]
    host_report: dict[str, Any]
    state: EdgeState
    model_dir: Path
    lines: list[str]


def train_in_process(
    bundle_dir: Path,
    data_spec: str,
    work: Path,
    *,
    epochs: int,
    batch_size: int = 32,
    eval_batch_size: int = 128,
    timeout_s: float = 600.0,
    threads: int = 1,
) -> InProcessRun:
    """Train the exported bundle at `bundle_dir` on `data_spec` for `epochs`, then write the
    model to `work`/model. State (host dir, edge spool and checkpoints) goes under `work`."""
    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(Path(bundle_dir) / "edge")
    data = load_dataset(data_spec, seed=0)
    config = LinkConfig(read_timeout=0.05)
    server = CloudServer(bundle, work / "host", key=bundle.key(), config=config)
    link = server.connect_in_process(edge_bundle, work / "edge" / "spool")
    engine = make_engine("ort", edge_bundle, threads=threads)
    cfg = EdgeRunConfig(
        epochs=epochs,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        work_dir=work / "edge",
    )
    try:
        edge = EdgeTrainer(engine, data, link, cfg, RunProgress("run-1")).run()
        link.flush(timeout=timeout_s)
    finally:
        link.close("done")
    try:
        _wait(lambda: all(s.done for s in server.states()), timeout_s)
    finally:
        server.stop()
    (state,) = server.states()
    lines: list[str] = []
    out = work / "model"
    model_out(parts_from_state(bundle, state), out, held_out_samples(data_spec), lines.append)
    return InProcessRun(edge, server.report(), state, out, lines)


def _wait(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise ModelCheckFailed(f"the host did not finish the run within {timeout_s:.0f} s")
        time.sleep(0.05)
