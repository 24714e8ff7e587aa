"""The cloud trainer: accepts edges, trains each edge's tail on its activations as they arrive.

The link's receiver thread keeps reading (up to its window) while the session thread trains, so
the next batch arrives while this one trains. Consumption is acknowledged at checkpoints, which
come every `checkpoint_every` batches, at each epoch end and when a session ends.

With `shared_tail`, every edge trains one `SharedTail` (one tail, one optimizer, one checkpoint
that holds every edge's accounting); each edge's exactly-once accounting stays its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.bundle import Bundle, BundleError
from edge_runtime.errors import HiertrainError
from edge_runtime.link import (
    EdgeLink,
    HandshakeRefused,
    HostListener,
    HostSession,
    LinkClosed,
    LinkConfig,
    LinkError,
)
from edge_runtime.link.control import Bye, Error
from edge_runtime.link.handshake import board_key
from edge_runtime.link.transports import Transport, socket_pair
from edge_runtime.model_messages import ModelWeights
from edge_runtime.report import MetricsCsv, RunReport
from edge_runtime.statefile import StateError
from edge_runtime.train.averaging import AveragingSchedule
from edge_runtime.train.messages import Batch, EpochEnd, EvalBatch, Metrics
from edge_runtime.train.schedule import rate_report
from host.cloud.edge_state import EdgeState, SharedTail, check_state_dir
from host.cloud.modes import host_mode

if TYPE_CHECKING:
    from host.cloud.modes.averaging import FrontAverager
from host.cloud.tail import TailTrainer
from host.cloud.validate import BadMessage, check_message
from host.keys.boards import Revocations
from models.errors import ManifestError, ModelSpecError

EventSink = Callable[[str, EdgeState, dict[str, Any]], None]

log = logging.getLogger("hiertrain.cloud")


class SessionFailed(HiertrainError):
    """Something no check foresaw failed in an edge's session (a user's tail raising in its
    forward, a bug): the host cannot go on with that edge's run and stops."""


class CloudServer:
    """Serves one training mode to any number of edges holding the same bundle."""

    # The shared tail's class: a rank of `hostctl serve --ranks` (host/cloud/distributed.py)
    # swaps in one whose steps and checkpoints are collective.
    shared_tail_type: type[SharedTail] = SharedTail

    def __init__(
        self,
        bundle: Bundle,
        state_dir: Path,
        *,
        key: bytes,
        checkpoint_every: int = 50,
        metrics_csv: Path | None = None,
        config: LinkConfig | None = None,
        on_event: EventSink | None = None,
        mode: str = "hierarchical",
        shared_key: bool = True,
        shared_tail: bool = False,
        average_fronts: AveragingSchedule | None = None,
        round_timeout: float = 600.0,
        expect_edges: int = 1,
        collect_model: bool = True,
    ) -> None:
        self.mode_half = host_mode(mode)(self)
        # Whether edges send their trained front + exit at the end (a model out needs it; on a
        # slow uplink it is minutes: ResNet-18's front at split 8 is 28 MB, 5 min at 768 kbit/s).
        self.collect_model = collect_model
        # Edges started together may connect seconds apart (a board importing onnxruntime):
        # exit_when_done and the first averaging round wait until this many have joined.
        self.expect_edges = max(1, expect_edges)
        if shared_tail and not self.mode_half.trains_tail:
            raise ValueError(f"--shared-tail: mode {mode!r} trains no tail to share")
        if average_fronts is not None and not (shared_tail and self.mode_half.averages_fronts):
            raise ValueError(
                f"--average-fronts-every: needs --shared-tail and a mode whose edges train "
                f"their own front ({mode!r} with shared tail {shared_tail})"
            )
        self.mode = mode
        self.bundle = bundle
        self.state_dir = Path(state_dir)
        self.checkpoint_every = checkpoint_every
        self.on_event = on_event or (lambda *_: None)
        self.csv = MetricsCsv(
            metrics_csv,
            ["time", "edge_id", "epoch", "index", "loss", "correct", "n", "busy_s", "seq"],
        )
        self._edges: dict[tuple[str, str], EdgeState] = {}
        self._edges_lock = threading.Lock()
        self._active: set[HostSession] = set()
        self._sessions: list[HostSession] = []  # every session so far, for the byte counts
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self.errors: list[str] = []
        self.fatal: HiertrainError | None = None  # why serving had to stop, if it had to
        self.started = time.time()
        self.shared: SharedTail | None = None
        try:  # a tail that cannot be built (a damaged user model) stops us here, not mid-run
            tail = TailTrainer(bundle).tail
            # So does a damaged checkpoint, or one of another model's or split's tail (a
            # bundle re-exported over the run's): it failed in each edge's connection.
            check_state_dir(self.state_dir, shared=shared_tail, tail=tail)
            if shared_tail:
                self.shared = self.shared_tail_type(bundle, self.state_dir)
        except (ModelSpecError, ManifestError) as exc:
            raise BundleError(f"{bundle.root}: the tail cannot be built: {exc}") from None
        self.averaging: FrontAverager | None = None
        if average_fronts is not None:
            from host.cloud.modes.averaging import FrontAverager

            self.averaging = FrontAverager(self, average_fronts, round_timeout, expect_edges)
        # Per-board keys: the host derives each board's key from the edge id its HELLO claims.
        # The shared key: every board holds the bundle's key and may claim any edge id.
        self.shared_key = shared_key
        self._key, self._config = key, config or LinkConfig()
        listener_key = key if shared_key else partial(board_key, key)
        self.listener = HostListener(
            listener_key,
            bundle.manifest_sha256,
            resume_for=self._resume_for,
            config=config,
            revoked=Revocations(self.state_dir),
            bundle_info=bundle.identity,
        )

    @property
    def key_mode(self) -> str:
        """One line saying which boards this host lets in, for its console."""
        if self.shared_key:
            return (
                "key mode: shared bundle key (--shared-key): any board holding the bundle's key "
                "may claim any edge id; for several boards use --board-keys and "
                "`hostctl key issue`"
            )
        return (
            "key mode: per-board keys (--board-keys): each board proves the key "
            "`hostctl key issue` derived for its edge id; the bundle's own key is refused"
        )

    # -- listener wiring ------------------------------------------------------------------------

    def serve_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Listen for edges on TCP; returns the bound address."""
        return self.listener.serve_tcp(host, port, self._handle)

    def serve_transport(self, transport: Transport) -> None:
        """Serve one edge on an already-connected stream (one end of `socket_pair`)."""
        self.listener.serve_transport(transport, self._handle)

    def connect_in_process(
        self,
        edge_bundle: Bundle,
        spool_dir: Path,
        *,
        edge_id: str = "edge-1",
        run_id: str = "run-1",
    ) -> EdgeLink:
        """An edge's link to this server in the same process: the real protocol (framing,
        handshake, acks, spool) over one `socket_pair`, with the server's key and link config.
        For in-process fleets, tests and benchmarks; a reconnection finds the stream closed."""
        edge_end, host_end = socket_pair(self._config.read_timeout)
        self.serve_transport(host_end)
        return EdgeLink.connect(
            "pair:",
            key=self._key if self.shared_key else board_key(self._key, edge_id),
            bundle_sha256=edge_bundle.manifest_sha256,
            edge_id=edge_id,
            run_id=run_id,
            spool_dir=spool_dir,
            config=self._config,
            opener=lambda: edge_end,
        )

    def serve_serial(self, url: str) -> None:
        """Serve the edge on a serial device (or any pyserial URL)."""
        self.listener.serve_serial(url, self._handle)

    def edge(self, edge_id: str, run_id: str) -> EdgeState:
        """The state of (edge, run), loaded from its checkpoint on first use."""
        with self._edges_lock:
            key = (edge_id, run_id)
            if key not in self._edges:
                self._edges[key] = EdgeState.open(
                    self.bundle, self.state_dir, edge_id, run_id, shared=self.shared
                )
            return self._edges[key]

    def states(self) -> list[EdgeState]:
        """Every (edge, run) served so far."""
        with self._edges_lock:
            return list(self._edges.values())

    def _resume_for(self, edge_id: str, run_id: str) -> tuple[int, dict[str, Any]]:
        with self._changed:
            twins = [s.run_id for s in self._active if s.edge_id == edge_id and s.run_id != run_id]
        if twins:
            # The same (edge, run) reconnecting takes its session over; another run under a
            # live edge id is a second board claiming this one's name.
            message = (
                f"edge id {edge_id!r} is already training run {twins[0]} here; "
                "give each board its own --edge-id"
            )
            self.errors.append(f"{edge_id}: refused run {run_id}: {message}")
            raise HandshakeRefused("identity", message)
        try:
            state = self.edge(edge_id, run_id)
        except (StateError, ModelSpecError, ManifestError) as exc:
            self.errors.append(f"{edge_id}: {exc}")
            raise HandshakeRefused(
                "state", f"the host cannot load this run's tail: {exc}"
            ) from None
        with state.lock:
            return state.consumed_seq, {
                **state.resume_info(),
                **self.mode_half.resume_info(state),
                "model": self.collect_model,
            }

    # -- one session --------------------------------------------------------------------------

    def _handle(self, session: HostSession) -> None:
        state = self.edge(session.edge_id, session.run_id)
        with self._changed:
            self._active.add(session)
            self._sessions.append(session)
            self._changed.notify_all()
        try:
            # Before "connected": whoever waits for that event finds the edge in the mode's
            # bookkeeping (a fleet's averaging round waits for it from then on).
            self.mode_half.session_started(session, state)
            self.on_event("connected", state, {})
            while not self._stopping.is_set():
                try:
                    msg = session.recv(timeout=0.2)
                except LinkClosed:
                    break
                if msg is None:
                    continue
                try:
                    check_message(msg, self.bundle.manifest)
                    with state.lock:  # a mode may refuse what only it can judge
                        self._dispatch(session, state, msg)
                except BadMessage as exc:
                    self._refuse(session, state, exc)
                    break
            else:
                if self.fatal is not None:
                    # Another edge's session failed and the host stops: this edge, too, ends on
                    # the host's words rather than reconnecting to nobody.
                    session.abort("state", f"the host stopped: {self.fatal}")
        except LinkError as exc:
            self.errors.append(f"{session.edge_id}: {exc}")
            self.on_event("error", state, {"error": str(exc)})
        except StateError as exc:
            self._fail(session, state, exc)
        except Exception as exc:  # noqa: BLE001 - unforeseen: e.g. a user's tail raising
            # It would fail again on the batch the edge resends: the thread used to die with a
            # traceback while the edge waited on acks, then reconnected to nobody for minutes.
            log.debug("session of edge %r failed", session.edge_id, exc_info=exc)
            self._fail(session, state, SessionFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            try:
                with state.lock:
                    self.commit(session, state)
            except StateError as exc:
                self._fail(session, state, exc)
            with self._changed:
                self._active.discard(session)
                self._changed.notify_all()
            self.mode_half.session_ended(session, state)
            self.on_event("disconnected", state, {})

    def _dispatch(self, session: HostSession, state: EdgeState, msg: Any) -> None:
        # Messages are matched by exact type: EVAL_BATCH is a subclass of BATCH on the wire
        # codec's side, but every mode scores it the same way.
        if type(msg) in self.mode_half.handles and self.mode_half.handle(session, state, msg):
            return
        if isinstance(msg, EvalBatch):
            state.evaluate(msg.epoch, msg.index, msg.tensor, msg.labels)
            state.last_seq = msg.seq
        elif isinstance(msg, EpochEnd):
            state.last_seq = msg.seq
            result = state.end_epoch(msg.epoch, msg.metrics)
            state.done = state.done or bool(msg.metrics.get("last"))
            self.commit(session, state)
            try:
                session.send(Metrics(result))
            except LinkError as exc:  # the edge is gone; its next session gets the figures again
                self.errors.append(f"{state.edge_id}: metrics not delivered: {exc}")
            self.on_event("epoch", state, result)
        elif isinstance(msg, ModelWeights):
            state.receive_model(msg)
            state.last_seq = msg.seq
        elif isinstance(msg, Bye):
            # "done" ends the edge's run; "stopped" means it will come back with --resume.
            state.done = state.done or msg.reason == "done"
            self.commit(session, state, force=True)
        elif isinstance(msg, Metrics):
            state.last_seq = max(state.last_seq, msg.seq)

    def _refuse(self, session: HostSession, state: EdgeState, exc: BadMessage) -> None:
        """An unusable message: tell the edge, log it, end its session; it is not trained on
        and not acknowledged. Other edges go on."""
        self.errors.append(f"{state.edge_id}: refused a message: {exc}")
        self.on_event("error", state, {"error": f"refused a message: {exc}"})
        with contextlib.suppress(LinkError):
            session.send(Error("message", f"the host refused a message: {exc}"))
            session.flush(5.0)  # the ERROR first: BYE and the closed stream would overtake it
        with contextlib.suppress(LinkError):
            session.close("bad message")

    def _fail(self, session: HostSession, state: EdgeState, exc: HiertrainError) -> None:
        """The host cannot go on (disk full, a tail that fails to train): tell the edge, which
        stops at once (it would reconnect to nobody), and stop serving. What was trained since
        the last checkpoint is not acknowledged, so the edge keeps it spooled."""
        self.errors.append(f"{state.edge_id}: {exc}")
        self.fatal = self.fatal or exc
        self.on_event("error", state, {"error": str(exc)})
        session.abort("state", f"the host stopped: {exc}")
        self.request_stop()

    def maybe_commit(self, session: HostSession, state: EdgeState) -> None:
        """Checkpoint and acknowledge once `checkpoint_every` batches are trained in memory."""
        if state.last_seq - state.consumed_seq >= self.checkpoint_every:
            self.commit(session, state)

    def batch_done(self, state: EdgeState, msg: Batch, figures: dict[str, Any]) -> None:
        """Record one trained batch: the metrics CSV row and the `batch` event."""
        self.csv.row(
            time=round(time.time(), 3),
            edge_id=state.edge_id,
            epoch=msg.epoch,
            index=msg.index,
            loss=round(figures["loss"], 5),
            correct=figures["correct"],
            n=figures["n"],
            busy_s=round(figures["busy_s"], 5),
            seq=msg.seq,
        )
        self.on_event(
            "batch",
            state,
            {"epoch": msg.epoch, "index": msg.index, "wire_bytes": msg.wire_bytes, **figures},
        )

    def commit(self, session: HostSession, state: EdgeState, force: bool = False) -> None:
        """Checkpoint if anything new was taken in, then acknowledge it as consumed."""
        if force or state.last_seq > state.consumed_seq:
            state.checkpoint()
        if state.consumed_seq:
            try:
                session.consumed(state.consumed_seq)
            except (LinkError, ValueError) as exc:
                # A replaced session cannot acknowledge; the next one resumes from the cursor.
                self.errors.append(f"{state.edge_id}: ack not sent: {exc}")

    # -- lifetime -------------------------------------------------------------------------------

    def wait(self, *, exit_when_done: bool = False, poll: float = 0.2) -> None:
        """Block until stop() (or, with exit_when_done, until every edge seen has said BYE and
        at least `expect_edges` edges were seen)."""
        with self._changed:
            while not self._stopping.is_set():
                if (
                    exit_when_done
                    and len({edge_id for edge_id, _ in self._edges}) >= self.expect_edges
                    and not self._active
                    and all(s.done for s in self._edges.values())
                ):
                    return
                self._changed.wait(poll)

    def request_stop(self) -> None:
        """Ask wait() to return (safe from a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """Finish the batch in hand, checkpoint every edge, stop listening."""
        self._stopping.set()
        if self.averaging is not None:
            self.averaging.close()
        with self._changed:
            self._changed.notify_all()
        deadline = time.monotonic() + 30
        with self._changed:
            while self._active and time.monotonic() < deadline:
                self._changed.wait(0.2)
        self.listener.close()
        with self._edges_lock:
            states = list(self._edges.values())
        for state in states:
            with state.lock:
                if state.last_seq > state.consumed_seq:
                    try:
                        state.checkpoint()
                    except StateError as exc:
                        self.errors.append(f"{state.edge_id}: {exc}")
                        self.fatal = self.fatal or exc
        self.csv.close()

    def report(self, link: str | None = None) -> dict[str, Any]:
        """The host's JSON report over all edges (keys per docs/architecture.md)."""
        with self._edges_lock:
            states = list(self._edges.values())
        m = self.bundle.manifest
        edges = []
        for s in states:
            last_epoch = max(s.epochs) if s.epochs else None
            last = s.epochs.get(last_epoch, {}) if last_epoch is not None else {}
            edges.append(
                {
                    "edge_id": s.edge_id,
                    "run_id": s.run_id,
                    "done": s.done,
                    "batches_trained_cloud": len(s.trained_ids),
                    "unique_batches_trained": len(set(s.trained_ids)),
                    "duplicates_dropped": s.duplicates,
                    "cloud_busy_s": round(s.cloud_busy_s, 3),
                    "last_trained_at": s.last_trained_at,
                    "final_accuracy": last.get("final_accuracy"),
                    "edge_exit_accuracy": last.get("edge_exit_accuracy"),
                    "early_exit": last.get("early_exit"),
                    "epochs": s.epochs,
                    "trained_ids": [list(i) for i in s.trained_ids],
                }
            )
        stats = self.listener_stats()
        single = edges[0] if len(edges) == 1 else {}
        return RunReport(
            mode=self.mode,
            role="cloud",
            model=m["model"],
            split=m["split"],
            link=link,
            epochs=max((len(e["epochs"]) for e in edges), default=0),
            runtime_s=round(time.time() - self.started, 3),
            bytes_up=stats["bytes_up"],
            bytes_down=stats["bytes_down"],
            batches_trained_cloud=sum(e["batches_trained_cloud"] for e in edges),
            final_accuracy=single.get("final_accuracy"),
            edge_exit_accuracy=single.get("edge_exit_accuracy"),
            cloud_busy_s=round(sum(e["cloud_busy_s"] for e in edges), 3),
            extra={
                # The tail's rate (its schedule sets each batch's by the batch's epoch).
                **rate_report(
                    m.get("cloud", {}).get("optimizer") if self.mode_half.trains_tail else None
                ),
                "shared_tail": self.shared_report(),
                "last_trained_at": single.get("last_trained_at"),
                "edges": edges,
                "errors": self.errors,
                # Peers turned away before a session, by reason (bounded however many came).
                "refusals": self.listener.refusals.as_dict(),
            },
        ).as_dict()

    def shared_report(self) -> dict[str, Any] | None:
        """The shared tail, if there is one: its optimizer steps (over restarts) and every edge
        whose batches it holds, including edges of an earlier life not back yet."""
        if self.shared is None:
            return None
        with self.shared.lock:
            keys = sorted(set(self.shared.saved) | set(self.shared.members))
            return {
                "steps": self.shared.steps,
                "checkpoint": str(self.shared.path),
                "edges": [{"edge_id": e, "run_id": r} for e, r in keys],
                **self.mode_half.report(),
            }

    def listener_stats(self) -> dict[str, int]:
        """Wire bytes over every session so far (up: edge to host)."""
        with self._changed:
            sessions = list(self._sessions)
        totals = {"bytes_up": 0, "bytes_down": 0}
        for session in sessions:
            stats = session.stats
            for k in totals:
                totals[k] += stats.get(k, 0)
        return totals
