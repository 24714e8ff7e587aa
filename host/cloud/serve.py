"""`hostctl serve`: run the cloud trainer until stopped (or until its edges are done)."""

from __future__ import annotations

import errno
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_runtime.bundle import Bundle
from edge_runtime.command_line import PROGRESS, Throttle
from edge_runtime.errors import HiertrainError, UsageFault
from edge_runtime.link import LinkConfig
from edge_runtime.report import write_report
from edge_runtime.train.averaging import AveragingSchedule
from host.cloud.edge_state import EdgeState
from host.cloud.server import CloudServer, EventSink
from host.report.curves import CurveWriter

log = logging.getLogger("hiertrain.cloud")

LISTEN_FORMS = "tcp://HOST:PORT (PORT 0 picks a free one)"


def parse_listen(url: str) -> tuple[str, int]:
    """'tcp://127.0.0.1:7070' -> ('127.0.0.1', 7070); a UsageFault naming the accepted form."""
    if not url.startswith("tcp://"):
        raise UsageFault(f"--listen {url!r}: expected {LISTEN_FORMS}")
    host, _, port = url[len("tcp://") :].rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageFault(f"--listen {url!r}: expected {LISTEN_FORMS}")
    return host.strip("[]"), int(port)


# What a user can do about the usual reasons a listening socket cannot be opened.
_LISTEN_HINTS = {
    errno.EADDRINUSE: "something already listens there (another hostctl serve?): stop it, "
    "or pick another port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address: give one of its own, "
    "or 0.0.0.0 for all",
    errno.EACCES: "ports below 1024 need root: pick a port from 1024 up",
}


def listen_tcp(serve_tcp: Callable[[str, int], tuple[str, int]], url: str) -> tuple[str, int]:
    """Open the --listen address with ``serve_tcp(host, port)`` (the cloud trainer's or the
    inference host's); a socket that cannot be opened is one line naming the address and
    what to do, not a bare "[Errno 98] Address already in use"."""
    host, port = parse_listen(url)
    try:
        return serve_tcp(host, port)
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
        hint = _LISTEN_HINTS.get(exc.errno or 0)
        raise HiertrainError(
            f"cannot listen on {url}: {why}" + (f"; {hint}" if hint else "")
        ) from None


def log_events(every: float | None = None) -> EventSink:
    """Progress lines for the host on the "hiertrain.cloud" logger: connections, a line per
    edge every ``every`` seconds (--progress-every), every epoch, every error."""
    throttle = Throttle(every)

    def on_event(kind: str, state: EdgeState, info: dict[str, Any]) -> None:
        who = f"edge {state.edge_id!r}"
        if kind == "connected":
            log.info("%s connected (run %s, resumes after %s)", who, state.run_id, state.trained)
        elif kind == "disconnected":
            log.info("%s disconnected; %d batches trained", who, len(state.trained_ids))
        elif kind == "batch" and throttle.due(state.edge_id):
            log.info(
                "%s epoch %s batch %s: tail loss %.3f, %d trained",
                who,
                info["epoch"],
                info["index"],
                info["loss"],
                len(state.trained_ids),
                extra={PROGRESS: True},
            )
        elif kind == "epoch":
            log.info(
                "%s epoch %s done: final accuracy %s, exit accuracy %s",
                who,
                info["epoch"],
                _pct(info.get("final_accuracy")),
                _pct(info.get("edge_exit_accuracy")),
            )
        elif kind == "error":
            log.error("%s: %s", who, info["error"])

    return on_event


def fan_out(*sinks: EventSink) -> EventSink:
    """One event sink that passes each event to every one of ``sinks``."""

    def on_event(kind: str, state: EdgeState, info: dict[str, Any]) -> None:
        for sink in sinks:
            sink(kind, state, info)

    return on_event


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


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
    mode: str = "hierarchical",
    shared_key: bool = True,
    model_out: Path | None = None,
    shared_tail: bool = False,
    average_fronts: AveragingSchedule | None = None,
    round_timeout: float = 600.0,
    expect_edges: int = 1,
) -> dict[str, Any]:
    """Run the cloud trainer in the foreground; SIGINT/SIGTERM stop it cleanly.

    Both sides' training curves go to TensorBoard event files under ``state_dir``.
    `model_out`: write the trained model there at the end (host/model), validated.
    """
    curves = CurveWriter(state_dir)
    server = CloudServer(
        bundle,
        state_dir,
        key=key,
        checkpoint_every=checkpoint_every,
        metrics_csv=metrics_csv,
        config=config,
        on_event=fan_out(log_events(), curves),
        mode=mode,
        shared_key=shared_key,
        shared_tail=shared_tail,
        average_fronts=average_fronts,
        round_timeout=round_timeout,
        expect_edges=expect_edges,
        collect_model=model_out is not None,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.request_stop())
    if listen is not None:
        host, port = listen_tcp(server.serve_tcp, listen)
        print(f"listening on tcp://{host}:{port}", flush=True)
    else:
        server.serve_serial(serial)
        print(f"listening on serial {serial}", flush=True)
    log.info(server.key_mode)
    if server.shared is not None:
        log.info("one tail shared by every edge, checkpointed in %s", server.shared.path)
    if server.averaging is not None:
        log.info("edges' fronts averaged %s and at the end of training", average_fronts)
    try:
        server.wait(exit_when_done=exit_when_done)
    finally:
        server.stop()
        curves.close()
        result = server.report(link_label)
        if report is not None:
            write_report(report, result)
    if server.fatal is not None:
        raise server.fatal
    if model_out is not None:
        from host.model.collect import averaged_model_out, run_models_out

        averaged = server.averaging.latest if server.averaging is not None else None
        if averaged is not None:  # one front for the whole fleet: one model (docs/model_out.md)
            averaged_model_out(bundle, server.states(), averaged, model_out, say=log.info)
        else:
            run_models_out(bundle, server.states(), model_out, say=log.info)
    return result
