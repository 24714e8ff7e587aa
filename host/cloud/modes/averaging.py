"""Front averaging, the host's part: FedAvg of the fleet's fronts, one round at a time.

Served with `hostctl serve --shared-tail --average-fronts-every N{batches|epochs}`. Each edge
sends its front + exit weights (MODEL_WEIGHTS, `round` = the version it averages towards,
`samples` since its last round) at its round boundary and waits. Round v closes when every edge
that must take part has sent its weights for it: every edge with a live session that is not done
and has not sent its last round (`last`). Edges that leave mid-round are not waited for; after
`round_timeout` seconds the round closes with the weights it has (the others are `missing` in
the round's log). With `--expect-edges N` a round also waits (up to the timeout) until N edges
have joined the fleet, so that edges started together, which connect seconds apart, all take
part in the first round. The average is weighted by each edge's samples (FedAvg); integer buffers are
rounded. Closing a round writes the shared checkpoint (the averaged front and its version are
in it) and acknowledges the contributions only then, so a host that crashes mid-round gets them
again from the edges' spools; then the averaged front goes down to every live edge as
MODEL_WEIGHTS of `round` = v. A contribution to a round already closed (an edge that missed it,
or a re-sent one) gets the latest average back and is counted `late`. An edge that (re)connects
to a fleet that has averaged gets the latest average at once and adopts it at its next batch.

Every lock here is the shared tail's: callers hold it (the server's dispatch) or take it.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edge_runtime.link import HostSession, LinkError
from edge_runtime.model_messages import ModelWeights, weight_messages
from edge_runtime.train.averaging import AveragingSchedule
from host.cloud.edge_state import EdgeState
from host.cloud.validate import BadMessage

if TYPE_CHECKING:
    from host.cloud.server import CloudServer

Key = tuple[str, str]
SEND_TIMEOUT_S = 30.0  # a wedged edge's full window must not hold the fleet's lock for long


def fedavg(contributions: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """The samples-weighted mean of each tensor (equal weights if no edge counted samples);
    integer tensors (BatchNorm's batch counters) are rounded back to their type."""
    total = sum(n for _, n in contributions)
    shares = [n / total if total else 1 / len(contributions) for _, n in contributions]
    names = contributions[0][0]
    out = {}
    for name, first in names.items():
        mean = np.zeros(first.shape, np.float64)
        for (weights, _), share in zip(contributions, shares, strict=True):
            mean += share * weights[name]
        out[name] = (np.rint(mean) if first.dtype.kind in "iu" else mean).astype(first.dtype)
    return out


class FrontAverager:
    """The fleet's averaged front: its version, the open round, and what went up and down."""

    def __init__(
        self,
        server: CloudServer,
        schedule: AveragingSchedule,
        round_timeout: float = 600.0,
        expect_edges: int = 1,
    ) -> None:
        if server.shared is None:
            raise ValueError("front averaging needs a shared tail (--shared-tail)")
        self.server = server
        self.shared = server.shared
        self.schedule = schedule
        self.round_timeout = round_timeout
        # A round closes early only once this many edges have joined the fleet: edges started
        # together connect seconds apart, and a first round of one edge averages nothing.
        self.expect_edges = max(1, expect_edges)
        saved = self.shared.front
        self.version: int = int(saved.get("version", 0))
        self.latest: dict[str, np.ndarray] | None = (
            {k: v.numpy() for k, v in saved["weights"].items()} if saved.get("weights") else None
        )
        self._parts: dict[Key, dict[int, ModelWeights]] = {}  # a contribution's parts so far
        self._round: dict[Key, tuple[dict[str, np.ndarray], int, int]] = {}  # weights, n, seq
        self._finished: set[Key] = set()  # sent their last round: not waited for any more
        # A restarted host: the edges its checkpoint knew mid-run come back one by one. The open
        # round waits for each until it is back (then it counts as connected) or the round
        # times out; else the first edge back would close a round alone and the fleet's rounds
        # would no longer line up (edges ending on different averages).
        self._returning: set[Key] = (
            {k for k, meta in self.shared.saved.items() if not meta.get("done")}
            if self.version
            else set()
        )
        self._sessions: dict[Key, HostSession] = {}
        self._timer: threading.Timer | None = None
        self._closed = False  # the server stopped: no round closes any more (a restart goes on)
        self.rounds: list[dict[str, Any]] = list(saved.get("rounds", []))
        self.bytes_up = 0  # tensor bytes of fronts received
        self.bytes_down = 0  # tensor bytes of averaged fronts sent
        self.late = 0
        self.front_versions: dict[str, dict[int, int]] = {}  # edge -> version -> batches

    # -- what the server and the host mode call ----------------------------------------------

    def welcome(self) -> dict[str, Any]:
        """What WELCOME tells an edge: the schedule and the current version."""
        return {**self.schedule.as_dict(), "version": self.version}

    def session_started(self, session: HostSession, state: EdgeState) -> None:
        """An edge (re)connected: it takes part from now on, and gets the latest average."""
        with state.lock:
            self._sessions[(state.edge_id, state.run_id)] = session
            self._returning.discard((state.edge_id, state.run_id))
            if self.latest is not None:
                self._send(session, self.latest)

    def session_ended(self, session: HostSession, state: EdgeState) -> None:
        """An edge left: the open round no longer waits for it."""
        with state.lock:
            key = (state.edge_id, state.run_id)
            if self._sessions.get(key) is session:
                del self._sessions[key]
                self._parts.pop(key, None)
            self._close_if_complete()

    def count_batch(self, state: EdgeState, front_version: int) -> None:
        """Which front version produced an edge's activation (the report's `front_versions`)."""
        per_edge = self.front_versions.setdefault(state.edge_id, {})
        per_edge[front_version] = per_edge.get(front_version, 0) + 1

    def contribute(self, session: HostSession, state: EdgeState, msg: ModelWeights) -> None:
        """One part of an edge's front for round `msg.round`. The caller holds the lock."""
        key = (state.edge_id, state.run_id)
        self._sessions[key] = session
        self.bytes_up += msg.nbytes
        parts = self._parts.setdefault(key, {})
        if any(p.parts != msg.parts or p.round != msg.round for p in parts.values()):
            parts.clear()
        parts[msg.part] = msg
        if len(parts) < msg.parts:
            return  # acknowledged with the whole: a restarted host must get every part again
        del self._parts[key]
        weights: dict[str, np.ndarray] = {}
        for i in sorted(parts):
            weights.update(parts[i].tensors)
        self._check_fits(weights)
        if msg.last:
            self._finished.add(key)
        if msg.round <= self.version:  # that round is closed: this edge missed it
            self.late += 1
            state.last_seq = msg.seq
            if self.latest is not None:
                self._send(session, self.latest)
            return
        # Not consumed yet: acknowledged when the round closes and its average is on disk.
        self._round[key] = (weights, msg.samples, msg.seq)
        if self._timer is None:
            self._timer = threading.Timer(self.round_timeout, self._timed_out, (self.version,))
            self._timer.daemon = True
            self._timer.start()
        self._close_if_complete()

    def _check_fits(self, weights: dict[str, np.ndarray]) -> None:
        """BadMessage unless `weights` name and shape what the fleet's front holds (the latest
        average, or the open round's first contribution): averaging needs one front."""
        reference = self.latest or next((w for w, _, _ in self._round.values()), None)
        if reference is None:
            return
        shapes = {k: (v.shape, v.dtype) for k, v in weights.items()}
        expected = {k: (v.shape, v.dtype) for k, v in reference.items()}
        if shapes != expected:
            odd = sorted(
                k for k in shapes.keys() | expected.keys() if shapes.get(k) != expected.get(k)
            )
            raise BadMessage(
                f"front weights of round {self.version + 1} do not fit the fleet's front "
                f"({', '.join(odd[:3])} differ): every edge of a fleet trains the same bundle"
            )

    # -- rounds -------------------------------------------------------------------------------

    def _required(self) -> set[Key]:
        """The edges the open round waits for."""
        members = self.shared.members
        connected = {
            k
            for k in self._sessions
            if k in members
            and not members[k].done
            and (k not in self._finished or k in self._round)
        }
        return connected | self._returning

    def _close_if_complete(self) -> None:
        joined = {edge_id for edge_id, _ in self.shared.members}
        if (
            not self._closed
            and self._round
            and len(joined) >= self.expect_edges
            and self._required() <= set(self._round)
        ):
            self._close("all")

    def _timed_out(self, version: int) -> None:
        with self.shared.lock:
            if not self._closed and self.version == version and self._round:
                self._close("timeout")
                self._returning.clear()  # not back within a round: not waited for any more

    def close(self) -> None:
        """The server stops: close no more rounds. An open round's weights were never
        acknowledged, so the edges send them again to the next life of the host."""
        with self.shared.lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _close(self, closed_by: str) -> None:
        """Average the round, make it durable, acknowledge it, send it down. Lock held."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        contributions = dict(self._round)
        missing = sorted(k[0] for k in self._required() - set(contributions))
        self._round.clear()
        averaged = fedavg([(w, n) for w, n, _ in contributions.values()])
        self.version += 1
        self.latest = averaged
        self.rounds.append(
            {
                "version": self.version,
                "samples": {k[0]: n for k, (_, n, _) in contributions.items()},
                "missing": missing,
                "closed_by": closed_by,
                "at": round(time.time(), 3),
            }
        )
        self.shared.front = {
            "version": self.version,
            "weights": {k: torch.from_numpy(np.array(v)) for k, v in averaged.items()},
            "rounds": self.rounds,
        }
        members = self.shared.members
        for key, (_, _, seq) in contributions.items():
            if key in members:
                members[key].last_seq = max(members[key].last_seq, seq)
        self.shared.checkpoint()  # the average and every contribution's cursor, one cut
        for key in contributions:
            session = self._sessions.get(key)
            if session is not None and key in members:
                self.server.commit(session, members[key])
        for key, session in list(self._sessions.items()):
            if key in members and not members[key].done:
                self._send(session, averaged)

    def _send(self, session: HostSession, weights: dict[str, np.ndarray]) -> None:
        samples = sum(self.rounds[-1]["samples"].values()) if self.rounds else 0
        try:
            for msg in weight_messages(weights, {}, round=self.version, samples=samples):
                session.send(msg, timeout=SEND_TIMEOUT_S)
                self.bytes_down += msg.nbytes
        except LinkError as exc:  # it gets the average when it reconnects
            self.server.errors.append(f"{session.edge_id}: averaged front not sent: {exc}")

    def report(self) -> dict[str, Any]:
        """The host report's `shared_tail.front_averaging`."""
        return {
            "schedule": str(self.schedule),
            "round_timeout_s": self.round_timeout,
            "version": self.version,
            "rounds": self.rounds,
            "late_contributions": self.late,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "front_versions": {
                e: {str(v): n for v, n in sorted(c.items())} for e, c in self.front_versions.items()
            },
        }


__all__ = ["FrontAverager", "fedavg"]
