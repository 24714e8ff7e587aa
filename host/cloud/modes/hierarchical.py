"""Hierarchical training (ours), host half: train the tail on each activation as it arrives."""

from __future__ import annotations

from typing import Any

from edge_runtime.link import HostSession
from edge_runtime.modes import hierarchical
from edge_runtime.train.messages import Batch
from host.cloud.edge_state import EdgeState
from host.cloud.modes.base import HostMode


class HierarchicalHost(HostMode):
    spec = hierarchical.SPEC
    handles = (Batch,)

    def handle(self, session: HostSession, state: EdgeState, msg: Any) -> bool:
        trained = state.train(msg.epoch, msg.index, msg.tensor, msg.labels)
        state.last_seq = msg.seq
        if trained is not None:
            self.server.batch_done(state, msg, trained.figures)
        self.server.maybe_commit(session, state)
        return True
