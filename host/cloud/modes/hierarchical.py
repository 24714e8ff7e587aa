"""Hierarchical training (ours), host half: train the tail on each activation as it arrives.

In a shared-tail fleet served with `--average-fronts-every`, it also runs the fronts' averaging
rounds (`host/cloud/modes/averaging.py`): the edges' MODEL_WEIGHTS of a round come here; a
model out (round 0) is left to the server.
"""

from __future__ import annotations

from typing import Any

from edge_runtime.link import HostSession
from edge_runtime.model_messages import ModelWeights
from edge_runtime.modes import hierarchical
from edge_runtime.train.messages import Batch
from host.cloud.edge_state import EdgeState
from host.cloud.modes.base import HostMode


class HierarchicalHost(HostMode):
    spec = hierarchical.SPEC
    handles = (Batch, ModelWeights)
    averages_fronts = True

    def resume_info(self, state: EdgeState) -> dict[str, Any]:
        averaging = self.server.averaging
        return {} if averaging is None else {"front_averaging": averaging.welcome()}

    def session_started(self, session: HostSession, state: EdgeState) -> None:
        if self.server.averaging is not None:
            self.server.averaging.session_started(session, state)

    def session_ended(self, session: HostSession, state: EdgeState) -> None:
        if self.server.averaging is not None:
            self.server.averaging.session_ended(session, state)

    def report(self) -> dict[str, Any]:
        averaging = self.server.averaging
        return {"front_averaging": None if averaging is None else averaging.report()}

    def handle(self, session: HostSession, state: EdgeState, msg: Any) -> bool:
        averaging = self.server.averaging
        if isinstance(msg, ModelWeights):
            if not msg.round:
                return False  # a model out: the server keeps it
            if averaging is None:  # an edge that thinks this host averages: say so, drop it
                self.server.errors.append(
                    f"{state.edge_id}: front round {msg.round} sent to a host that averages no fronts"
                )
                state.last_seq = msg.seq
                return True
            averaging.contribute(session, state, msg)
            return True
        trained = state.train(msg.epoch, msg.index, msg.tensor, msg.labels)
        state.last_seq = msg.seq
        if trained is not None:
            if averaging is not None:
                averaging.count_batch(state, msg.front_version)
            self.server.batch_done(state, msg, trained.figures)
        self.server.maybe_commit(session, state)
        return True
