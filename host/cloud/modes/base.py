"""The host half of a link mode: what the host does with the messages only that mode sends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from edge_runtime.link import HostSession
from edge_runtime.modes import ModeSpec
from host.cloud.edge_state import EdgeState

if TYPE_CHECKING:
    from host.cloud.server import CloudServer


class HostMode(ABC):
    """Called by `CloudServer`, which owns sessions, checkpoints, acks and the report.

    The server handles what every mode shares (EVAL_BATCH, EPOCH_END, BYE, METRICS) and hands
    every other message to the mode first.
    """

    spec: ClassVar[ModeSpec]
    # The message types this mode acts on (exact types); the server handles the rest.
    handles: ClassVar[tuple[type, ...]]
    # Whether the host half trains a tail on activations (and so can share one across edges).
    trains_tail: ClassVar[bool] = True
    # Whether its edges can average their fronts through the host (a shared tail's fleet).
    averages_fronts: ClassVar[bool] = False

    def __init__(self, server: CloudServer) -> None:
        self.server = server

    def resume_info(self, state: EdgeState) -> dict[str, Any]:
        """What this mode adds to an edge's WELCOME (`resume`)."""
        return {}

    def session_started(self, session: HostSession, state: EdgeState) -> None:  # noqa: B027
        """An edge's session began (after WELCOME); most modes need nothing."""

    def session_ended(self, session: HostSession, state: EdgeState) -> None:  # noqa: B027
        """An edge's session ended (its state is committed); most modes need nothing."""

    def report(self) -> dict[str, Any]:
        """What the mode adds to the shared tail's report."""
        return {}

    @abstractmethod
    def handle(self, session: HostSession, state: EdgeState, msg: Any) -> bool:
        """Act on `msg` (one of `handles`); returns False to leave it to the server."""
