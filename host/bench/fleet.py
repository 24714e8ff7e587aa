"""A fleet in one process: several edges training into one host, for benchmarks and tests.

Real parts throughout: each edge is an `EdgeTrainer` with a real engine (ONNX Runtime or torch)
on a real link session over one `socket_pair` (framing, handshake, acks, spool), the host one
`CloudServer`; each edge trains in a thread. No network and no subprocess, so a fleet's
accuracy and bytes can be compared across settings (its own tail, a shared tail, a shared tail
with front averaging) on the same data in seconds. Timings here share the process's cores and
say nothing about a real fleet's runtime.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import load_bundle
from edge_runtime.data import Dataset
from edge_runtime.engines import Engine, make_engine
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.train.averaging import AveragingSchedule
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from host.cloud.server import CloudServer

LINK = LinkConfig(read_timeout=0.05, reconnect_timeout=60.0)


def split_non_iid(data: Dataset, edges: int, home_share: float, seed: int = 0) -> list[Dataset]:
    """Cut the train split across `edges` with non-identical class mixes: class c sends
    `home_share` of its samples to edge c mod `edges` and the rest evenly to the others. Every
    edge keeps the whole test split, so that their accuracies are measured on the same samples."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(edges)]
    for c in range(data.num_classes):
        idx = rng.permutation(np.flatnonzero(data.y_train == c))
        home = int(round(home_share * len(idx)))
        parts[c % edges].extend(idx[:home])
        for i, chunk in enumerate(np.array_split(idx[home:], edges - 1)):
            parts[(c % edges + 1 + i) % edges].extend(chunk)
    return [
        Dataset.from_arrays(
            f"{data.name}[{k}/{edges}]",
            data.x_train[np.sort(p)],
            data.y_train[np.sort(p)],
            data.x_test,
            data.y_test,
            num_classes=data.num_classes,
            classes=data.classes,
        )
        for k, p in enumerate(parts)
    ]


@dataclass
class FleetRun:
    """What a fleet run gave: each edge's report, the host's, and the live objects."""

    edges: dict[str, dict[str, Any]]
    host: dict[str, Any]
    server: CloudServer
    engines: dict[str, Engine] = field(default_factory=dict)

    def final_accuracy(self) -> float:
        """Mean over the edges of the final exit's accuracy (each edge's front, the tail)."""
        return float(np.mean([e["final_accuracy"] for e in self.host["edges"]]))


def run_fleet(
    bundle_dir: Path,
    datasets: dict[str, Dataset],
    work: Path,
    *,
    epochs: int,
    batch_size: int,
    shared_tail: bool = True,
    average_every: str | None = None,
    engine: str = "ort",
    codec: str = "fp32",
    timeout: float = 1800.0,
    round_timeout: float = 600.0,
    slowdown: dict[str, float] | None = None,
) -> FleetRun:
    """Every edge of `datasets` trains on its own data into one host. Every edge's session is
    live on the host before any edge trains, so that a first averaging round waits for the whole
    fleet. `timeout`: how
    long an edge waits for an average (and the run for its edges); `round_timeout`: the host's
    bound on a round; `slowdown`: per edge, its steps stretched as a slower board's. RuntimeError
    names an edge that failed."""
    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(bundle_dir / "edge")
    connected: set[str] = set()
    changed = threading.Condition()

    def on_event(kind: str, state: Any, info: dict[str, Any]) -> None:
        if kind == "connected":
            with changed:
                connected.add(state.edge_id)
                changed.notify_all()

    server = CloudServer(
        bundle,
        work / "host",
        key=bundle.key(),
        config=LINK,
        on_event=on_event,
        shared_tail=shared_tail,
        average_fronts=AveragingSchedule.parse(average_every) if average_every else None,
        round_timeout=round_timeout,
    )
    links: dict[str, EdgeLink] = {}
    engines: dict[str, Engine] = {}
    for edge_id in datasets:
        links[edge_id] = server.connect_in_process(
            edge_bundle, work / edge_id / "spool", edge_id=edge_id
        )
        engines[edge_id] = make_engine(engine, edge_bundle, threads=1, variant="train")
    with changed:  # every session live on the host before any edge trains
        if not changed.wait_for(lambda: connected >= set(datasets), timeout=120):
            raise RuntimeError(f"edges not connected: {sorted(set(datasets) - connected)}")
    out: dict[str, Any] = {}

    def run(edge_id: str) -> None:
        cfg = EdgeRunConfig(
            epochs=epochs,
            batch_size=batch_size,
            codec=codec,
            work_dir=work / edge_id,
            round_timeout=timeout,
            slowdown=(slowdown or {}).get(edge_id, 1.0),
        )
        link = links[edge_id]
        try:
            trainer = EdgeTrainer(
                engines[edge_id], datasets[edge_id], link, cfg, RunProgress("run-1")
            )
            out[edge_id] = trainer.run()
            link.flush(timeout=120)
        except Exception as exc:  # noqa: BLE001 - reported below, with the edge's name
            out[edge_id] = exc
        finally:
            link.close("done")

    threads = [threading.Thread(target=run, args=(e,), daemon=True) for e in datasets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(e["done"] for e in server.report()["edges"]):
        time.sleep(0.02)
    server.stop()
    failed = {e: r for e, r in out.items() if not isinstance(r, dict)}
    missing = sorted(set(datasets) - set(out))
    if failed or missing:
        raise RuntimeError(f"fleet edges failed: {failed or ''} {missing or ''}".strip())
    return FleetRun(out, server.report(), server, engines)
