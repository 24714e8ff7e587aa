"""Split learning, host half: train the tail and send the activation's gradient back."""

from __future__ import annotations

from typing import Any

from edge_runtime.link import HostSession
from edge_runtime.link.codecs import BY_NAME
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
            session.send(Grad(msg.epoch, msg.index, trained.grad, grad_codec(msg.codec)))
            self.server.batch_done(state, msg, trained.figures)
        self.server.maybe_commit(session, state)
        return True


def grad_codec(batch_codec: str) -> str:
    """The gradient goes down in the activation's codec when that is lossless (fp32+z: the same
    coding both ways, a fair baseline for coded hierarchical runs); a lossy one (fp16, int8)
    would change what split learning trains, so its gradient stays fp32."""
    return batch_codec if BY_NAME[batch_codec].lossless else "fp32"
