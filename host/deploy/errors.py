"""The two ways a deploy goes wrong: the user's input, or a step on the way."""

from __future__ import annotations

from edge_runtime.errors import HiertrainError, UsageFault


class BoardError(UsageFault):
    """A board file or deploy bundle that is missing, malformed, or asks for the impossible.

    The message names the file, the key and what is valid; hostctl exits 2 on it.
    """


class DeployError(HiertrainError):
    """A step of bundling or deploying failed; on the board, `current` is what it was before.

    hostctl exits 1 on it, naming the step and the cause.
    """

    def __init__(self, step: str, cause: str, current: str | None = None):
        self.step, self.cause, self.current = step, cause, current
        kept = f"; the board's current release is still {current}" if current else ""
        super().__init__(f"step '{step}' failed: {cause}{kept}")
