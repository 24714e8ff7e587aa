"""The edge's sending stage: a bounded queue between the engine and the link.

The engine trains step k+1 while this thread encodes and transmits batch k. When the link is
slower than the engine, the queue fills and `put` blocks: back-pressure, the slowest stage sets
the pace and memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
import time

from edge_runtime.link import EdgeLink, LinkError
from edge_runtime.link.control import Error
from edge_runtime.link.messages import Malformed, Message
from edge_runtime.model_messages import ModelWeights
from edge_runtime.train.messages import Batch, EvalBatch, Grad, Metrics

_STOP = object()
# With a stop asked for, how long the queue may stay full while the link moves nothing (no
# message reaches the host, none is consumed) before the sender gives up: the link is down.
# A live slow link moves a message every few seconds (a smallcnn int8 batch on 3g: well under
# one). A single message that takes longer than this on the wire reads as a stall too; that
# costs redone batches (the last checkpoint stands), never lost ones.
STALLED_AT_STOP_S = 10.0


class HostRefused(LinkError):
    """The host answered with an ERROR message."""


class StalledAtStop(Exception):  # noqa: N818 - a condition the trainer handles, not a failure
    """A stop was asked for while the link moved nothing: what is queued cannot be handed to
    the link, so the trainer writes no checkpoint past it (the last one stands, as after a
    kill, and --resume re-creates the batches since)."""


class Sender:
    """Owns the link's send side on a thread of its own; collects what the host sends back."""

    def __init__(self, link: EdgeLink, depth: int = 2, stop: threading.Event | None = None) -> None:
        self._link = link
        self._stop = stop or threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: LinkError | None = None
        self._lock = threading.Lock()
        self.metrics: list[dict] = []
        self._grads: dict[tuple[int, int], Grad] = {}
        self._grad_ready = threading.Condition(self._lock)
        # Averaged fronts from the host (front averaging), by version, by part.
        self._fronts: dict[int, dict[int, ModelWeights]] = {}
        self.batches_sent = 0
        self.eval_batches_sent = 0
        self.send_s = 0.0  # time spent inside link.send (transmit or blocked by the window)
        self._thread = threading.Thread(target=self._run, name="edge-sender", daemon=True)
        self._thread.start()

    def put(self, msg: Message) -> float:
        """Queue `msg`; blocks while the queue is full. Returns seconds spent blocked.

        StalledAtStop once a stop is asked for and the link has moved nothing for
        STALLED_AT_STOP_S (down, and retrying for its reconnect timeout)."""
        t0 = time.perf_counter()
        watch = _StallWatch(self._link, self._stop)
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(msg, timeout=0.2)
                return time.perf_counter() - t0
            except queue.Full:
                watch.check()

    def drain(self) -> None:
        """Wait until everything queued was handed to the link; raise its error if it failed
        (StalledAtStop as `put`). Again after a drain: nothing more to wait for."""
        if self._thread.is_alive():
            self.put(_STOP)  # type: ignore[arg-type] - the thread's own end marker
        watch = _StallWatch(self._link, self._stop)
        while self._thread.is_alive():
            self._thread.join(0.2)
            watch.check()
        self._raise_if_failed()

    def poll_host(self, timeout: float = 0.0) -> None:
        """Take what the host sent (METRICS, ERROR) without blocking the send path."""
        while (msg := self._link.poll(timeout)) is not None:
            timeout = 0.0
            if isinstance(msg, Metrics):
                with self._lock:
                    self.metrics.append(msg.data)
            elif isinstance(msg, Grad):
                with self._grad_ready:
                    self._grads[(msg.epoch, msg.index)] = msg
                    self._grad_ready.notify_all()
            elif isinstance(msg, ModelWeights):
                with self._grad_ready:
                    parts = self._fronts.setdefault(msg.round, {})
                    if any(p.parts != msg.parts for p in parts.values()):
                        parts.clear()  # a new count restarts the version, as on the host
                    parts[msg.part] = msg
                    self._grad_ready.notify_all()
            elif isinstance(msg, Error):
                self._fail(HostRefused(f"host error {msg.code}: {msg.message}"))
            elif isinstance(msg, Malformed):
                self._fail(LinkError(f"the host sent a message this edge cannot read: {msg.error}"))

    def await_grad(self, epoch: int, index: int, timeout: float) -> Grad:
        """Split learning: block until the host's GRAD for batch (epoch, index) arrives."""
        deadline = time.monotonic() + timeout
        while True:
            with self._grad_ready:
                if (grad := self._grads.pop((epoch, index), None)) is not None:
                    return grad
            self._raise_if_failed()
            if time.monotonic() > deadline:
                raise LinkError(
                    f"no gradient from the host for batch {(epoch, index)} in {timeout} s"
                )
            self.poll_host(0.05)

    def take_front(self, newer_than: int) -> list[ModelWeights] | None:
        """The parts of the newest complete averaged front above version `newer_than` (None if
        there is none yet); older versions are dropped."""
        with self._lock:
            complete = [
                v
                for v, parts in self._fronts.items()
                if v > newer_than and parts and len(parts) == next(iter(parts.values())).parts
            ]
            if not complete:
                return None
            best = max(complete)
            parts = self._fronts.pop(best)
            for v in [v for v in self._fronts if v <= best]:
                del self._fronts[v]
        return [parts[i] for i in sorted(parts)]

    def await_front(self, newer_than: int, timeout: float) -> list[ModelWeights]:
        """Front averaging: block until an averaged front above version `newer_than` is in."""
        deadline = time.monotonic() + timeout
        while True:
            if (parts := self.take_front(newer_than)) is not None:
                return parts
            self._raise_if_failed()
            if time.monotonic() > deadline:
                raise LinkError(
                    f"no averaged front above version {newer_than} from the host in {timeout} s"
                )
            self.poll_host(0.05)

    def _raise_if_failed(self) -> None:
        with self._lock:
            if self._error is not None:
                raise self._error

    def _fail(self, error: LinkError) -> None:
        with self._lock:
            if self._error is None:
                self._error = error

    def _run(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is _STOP:
                return
            if self._error is not None:
                continue  # keep draining so put() never blocks forever; the error is raised there
            t0 = time.perf_counter()
            try:
                self._link.send(msg)
                self.poll_host()
            except LinkError as exc:
                self._fail(exc)
                continue
            self.send_s += time.perf_counter() - t0
            if isinstance(msg, Batch):
                if isinstance(msg, EvalBatch):
                    self.eval_batches_sent += 1
                else:
                    self.batches_sent += 1


class _StallWatch:
    """Raises StalledAtStop from `check()` when a stop is asked for and the link has moved
    nothing (the host's received cursor, the unconsumed count) for STALLED_AT_STOP_S."""

    def __init__(self, link: EdgeLink, stop: threading.Event) -> None:
        self._link, self._stop = link, stop
        self._mark: tuple[int, int] | None = None
        self._since = time.monotonic()

    def check(self) -> None:
        """Call while blocked; raises StalledAtStop once the wait is hopeless."""
        if not self._stop.is_set():
            self._mark = None
            return
        now = (self._link.received, self._link.pending)
        if now != self._mark:  # it moved (or the stop just came): the clock starts again
            self._mark, self._since = now, time.monotonic()
        elif time.monotonic() - self._since > STALLED_AT_STOP_S:
            raise StalledAtStop(
                f"the link moved nothing for {STALLED_AT_STOP_S:g} s after the stop"
            )
