"""`hostctl serve`: run the cloud trainer until stopped (or until its edges are done)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from edge_runtime.bundle import Bundle
from edge_runtime.errors import UsageFault
from edge_runtime.link import LinkConfig
from edge_runtime.link.refusals import Refusal
from edge_runtime.report import write_report
from host.cloud.edge_state import EdgeState
from host.cloud.server import CloudServer

LISTEN_FORMS = "tcp://HOST:PORT (PORT 0 picks a free one)"


def parse_listen(url: str) -> tuple[str, int]:
    """'tcp://127.0.0.1:7070' -> ('127.0.0.1', 7070); a UsageFault naming the accepted form."""
    if not url.startswith("tcp://"):
        raise UsageFault(f"--listen {url!r}: expected {LISTEN_FORMS}")
    host, _, port = url[len("tcp://") :].rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageFault(f"--listen {url!r}: expected {LISTEN_FORMS}")
    return host.strip("[]"), int(port)


def console_events(console: Console):
    """Progress lines for the host: connections, a line every 20 batches, every epoch."""

    def on_event(kind: str, state: EdgeState, info: dict[str, Any]) -> None:
        who = f"[bold]{state.edge_id}[/]"
        if kind == "connected":
            console.print(f"{who} connected (run {state.run_id}, resumes after {state.trained})")
        elif kind == "disconnected":
            console.print(f"{who} disconnected; {len(state.trained_ids)} batches trained")
        elif kind == "batch" and len(state.trained_ids) % 20 == 0:
            console.print(
                f"{who} epoch {info['epoch']} batch {info['index']}: tail loss "
                f"{info['loss']:.3f}, {len(state.trained_ids)} trained"
            )
        elif kind == "epoch":
            fa, ea = info.get("final_accuracy"), info.get("edge_exit_accuracy")
            console.print(
                f"{who} epoch {info['epoch']} done: final accuracy "
                f"{'n/a' if fa is None else f'{100 * fa:.1f}%'}, exit accuracy "
                f"{'n/a' if ea is None else f'{100 * ea:.1f}%'}"
            )
        elif kind == "error":
            console.print(f"{who} [red]{info['error']}[/]")

    return on_event


def console_refusals(console: Console) -> Callable[[Refusal, int], None]:
    """A line per refused peer: the first 10 of each reason, then every 100th (a flood of
    peers must not flood the console; the report has every count)."""

    def on_refusal(refusal: Refusal, count: int) -> None:
        if count <= 10 or count % 100 == 0:
            console.print(
                f"[yellow]refused[/] {refusal.peer} ({refusal.code}, #{count}): {refusal.message}"
            )

    return on_refusal


def serve(
    bundle: Bundle,
    *,
    listen: str | None,
    serial: str | None,
    state_dir: Path,
    key: bytes,
    report: Path | None,
    metrics_csv: Path | None,
    checkpoint_every: int,
    exit_when_done: bool,
    link_label: str | None,
    config: LinkConfig,
    console: Console,
    mode: str = "hierarchical",
    shared_key: bool = True,
    model_out: Path | None = None,
    shared_tail: bool = False,
) -> dict[str, Any]:
    """Run the cloud trainer in the foreground; SIGINT/SIGTERM stop it cleanly.

    `model_out`: write the trained model there at the end (host/model), validated."""
    server = CloudServer(
        bundle,
        state_dir,
        key=key,
        checkpoint_every=checkpoint_every,
        metrics_csv=metrics_csv,
        config=config,
        on_event=console_events(console),
        mode=mode,
        shared_key=shared_key,
        shared_tail=shared_tail,
    )
    server.listener.refusals.on_refusal = console_refusals(console)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.request_stop())
    if listen is not None:
        host, port = server.serve_tcp(*parse_listen(listen))
        print(f"listening on tcp://{host}:{port}", flush=True)
    else:
        server.serve_serial(serial)
        print(f"listening on serial {serial}", flush=True)
    console.print(server.key_mode)
    if server.shared is not None:
        console.print(f"one tail shared by every edge, checkpointed in {server.shared.path}")
    try:
        server.wait(exit_when_done=exit_when_done)
    finally:
        server.stop()
        result = server.report(link_label)
        if report is not None:
            write_report(report, result)
    if server.fatal is not None:
        raise server.fatal
    if model_out is not None:
        from host.model.collect import run_models_out

        run_models_out(bundle, server.states(), model_out, say=console.print)
    return result
