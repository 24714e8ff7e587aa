"""Split learning, host half: train the tail and send the activation's gradient back."""

from __future__ import annotations

from typing import Any

from edge_runtime.link import HostSession
from edge_runtime.modes import split
from edge_runtime.train.messages import Batch, Grad
from host.cloud.edge_state import EdgeState
from host.cloud.modes.base import HostMode


class SplitHost(HostMode):
    spec = split.SPEC
    handles = (Batch,)

    def handle(self, session: HostSession, state: EdgeState, msg: Any) -> bool:
        trained = state.train(msg.epoch, msg.index, msg.tensor, msg.labels, want_grad=True)
        state.last_seq = msg.seq
        if trained is not None:
            session.send(Grad(msg.epoch, msg.index, trained.grad))
            self.server.batch_done(state, msg, trained.figures)
        self.server.maybe_commit(session, state)
        return True
