"""`hostctl serve --infer`: tail.onnx answers each INFER_REQUEST with an INFER_ANSWER.

The same link as training (framing, authentication, retransmission, codecs): the listener
checks the edge's key and that it holds the same model (model.json's sha256 in place of a
bundle manifest's). Requests carry activations only; the host never sees an input.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import sha256_file
from edge_runtime.infer.messages import InferAnswer, InferRequest
from edge_runtime.infer.model_dir import MODEL_JSON, TAIL_ONNX, read_model_dir
from edge_runtime.link import HostListener, HostSession, LinkClosed, LinkConfig, LinkError
from edge_runtime.link.transports import Transport
from edge_runtime.report import RunReport, write_report


class InferServer:
    """Answers offloaded samples of any number of edges holding the same model."""

    def __init__(self, model_dir: Path, *, key: bytes, config: LinkConfig | None = None) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.description = read_model_dir(self.model_dir, needs=(TAIL_ONNX,))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._tail = ort.InferenceSession(
            str(self.model_dir / TAIL_ONNX), opts, providers=["CPUExecutionProvider"]
        )
        io = self.description["io"][TAIL_ONNX]
        self._in, self._out = io["inputs"][0], io["outputs"][0]
        self._shape = tuple(self.description["activation_shape"])
        self._lock = threading.Lock()
        self.answered = 0
        self.requests = 0
        self.busy_s = 0.0
        self._by_edge: dict[int, int] = {}  # id(session) -> samples the tail answered
        self.errors: list[str] = []
        self._sessions: list[HostSession] = []
        self._active = 0
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self.listener = HostListener(key, sha256_file(self.model_dir / MODEL_JSON), config=config)

    def serve_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Listen on TCP; returns the bound address."""
        return self.listener.serve_tcp(host, port, self._handle)

    def serve_transport(self, transport: Transport) -> None:
        """Serve one edge on a connected stream (one end of `socket_pair`)."""
        self.listener.serve_transport(transport, self._handle)

    def serve_serial(self, url: str) -> None:
        """Serve the edge on a serial device (or pyserial URL)."""
        self.listener.serve_serial(url, self._handle)

    def _handle(self, session: HostSession) -> None:
        with self._changed:
            self._sessions.append(session)
            self._active += 1
        try:
            self._answer(session)
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def wait(self, *, exit_when_done: bool = False) -> None:
        """Block until request_stop() (or, with exit_when_done, until every edge has left)."""
        with self._changed:
            while not self._stopping.is_set():
                if exit_when_done and self._sessions and not self._active:
                    return
                self._changed.wait(0.2)

    def request_stop(self) -> None:
        """Ask wait() to return (safe from a signal handler)."""
        self._stopping.set()

    def _answer(self, session: HostSession) -> None:
        try:
            while True:
                try:
                    msg = session.recv(timeout=0.2)
                except LinkClosed:
                    return
                if msg is None:
                    continue
                if isinstance(msg, InferRequest):
                    if tuple(msg.tensor.shape[1:]) != self._shape:
                        self.errors.append(
                            f"{session.edge_id}: activation of shape {msg.tensor.shape[1:]}"
                        )
                        session.close("bad request")
                        return
                    t = time.perf_counter()
                    logits = self._tail.run(
                        [self._out], {self._in: np.ascontiguousarray(msg.tensor, np.float32)}
                    )[0]
                    session.send(InferAnswer(msg.first_id, logits.argmax(1)))
                    with self._lock:
                        self.busy_s += time.perf_counter() - t
                        self.answered += len(msg.tensor)
                        self.requests += 1
                        key = id(session)
                        self._by_edge[key] = self._by_edge.get(key, 0) + len(msg.tensor)
                session.consumed(msg.seq)
        except LinkError as exc:
            self.errors.append(f"{session.edge_id}: {exc}")

    def stats(self) -> dict[str, Any]:
        """Samples answered, busy time, wire bytes over every session (up: edge to host), and
        the same per session (an edge that connects twice has two records)."""
        with self._lock:
            sessions = list(self._sessions)
            by_edge = dict(self._by_edge)
        per_edge = [
            {
                "edge_id": s.edge_id,
                "run_id": s.run_id,
                "answered": by_edge.get(id(s), 0),
                "bytes_up": s.stats.get("bytes_up", 0),
                "bytes_down": s.stats.get("bytes_down", 0),
            }
            for s in sessions
        ]
        return {
            "role": "cloud",
            "mode": "infer",
            "answered": self.answered,
            "requests": self.requests,
            "cloud_busy_s": round(self.busy_s, 3),
            "bytes_up": sum(e["bytes_up"] for e in per_edge),
            "bytes_down": sum(e["bytes_down"] for e in per_edge),
            "edges": per_edge,
            "errors": self.errors,
        }

    def report(self, runtime_s: float, link: str | None = None) -> RunReport:
        """The host's run report: the shared keys, and what the tail answered per edge."""
        figures = self.stats()
        return RunReport(
            mode="infer",
            role="cloud",
            model=self.description.get("model"),
            split=self.description.get("split"),
            link=link,
            runtime_s=round(runtime_s, 3),
            bytes_up=figures["bytes_up"],
            bytes_down=figures["bytes_down"],
            cloud_busy_s=figures["cloud_busy_s"],
            extra={k: figures[k] for k in ("answered", "requests", "edges", "errors")},
        )

    def close(self) -> None:
        """Stop listening."""
        self.listener.close()


def serve_infer(
    model_dir: Path,
    *,
    listen: str | None,
    serial: str | None,
    key: bytes,
    config: LinkConfig,
    exit_when_done: bool,
    report_path: Path | None = None,
    link_label: str | None = None,
    say: Any = print,
) -> dict[str, Any]:
    """Run the inference host in the foreground; SIGINT/SIGTERM stop it. Returns its report
    (written to `report_path` as JSON when given)."""
    import signal

    from host.cloud.serve import listen_tcp

    server = InferServer(model_dir, key=key, config=config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.request_stop())
    if listen is not None:
        host, port = listen_tcp(server.serve_tcp, listen)
        print(f"listening on tcp://{host}:{port}", flush=True)
    else:
        server.serve_serial(serial)
        print(f"listening on serial {serial}", flush=True)
    t0 = time.perf_counter()
    try:
        server.wait(exit_when_done=exit_when_done)
    finally:
        server.close()
    report = server.report(time.perf_counter() - t0, link_label).as_dict()
    if report_path is not None:
        write_report(report_path, report)
    say(
        f"inference host done: {report['answered']} samples answered for "
        f"{len(report['edges'])} edge session(s), {report['bytes_up'] / 1e3:.1f} kB received"
    )
    return report
