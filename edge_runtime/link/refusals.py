"""What the host turned away before a session: counted by reason, the last few kept, each logged.

A host on a network meets peers that never authenticate: scanners, wrong keys, floods. Each
refusal is one log line with the peer's address and the reason; the report carries counts by
reason. Memory stays bounded however many come: a count per reason and a short ring of the last.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("hiertrain.link")

# Reasons besides the ERROR codes a peer is told (handshake.REFUSAL_CODES, "protocol"): the host
# closed the connection without a word.
IDLE = "idle"  # no HELLO/AUTH within the handshake timeout
OVERSIZE = "oversize"  # a frame above the pre-authentication limit
BUSY = "busy"  # too many connections already in their handshake


@dataclass(frozen=True)
class Refusal:
    """One peer turned away: where from, the reason code, and what it was told."""

    peer: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.peer}: {self.message}"


class Refusals:
    """Counts by reason and the last ``keep`` refusals; iterating yields those last ones."""

    def __init__(self, keep: int = 32) -> None:
        self.counts: dict[str, int] = {}
        self._recent: deque[Refusal] = deque(maxlen=keep)
        self._lock = threading.Lock()
        # Called with each refusal and its reason's count so far (the host's console).
        self.on_refusal: Callable[[Refusal, int], None] | None = None

    def add(self, peer: str, code: str, message: str, who: str | None = None) -> Refusal:
        """Count, keep and log one refusal; `who` names the peer in the log when its HELLO said
        which edge it claims to be (`peer` stays its address)."""
        refusal = Refusal(peer, code, message)
        with self._lock:
            count = self.counts[code] = self.counts.get(code, 0) + 1
            self._recent.append(refusal)
        # A flood of peers must not flood the log: the first 10 of each reason, then every
        # 100th (the report has every count).
        if count <= 10 or count % 100 == 0:
            log.warning("refused %s (%s, #%d): %s", who or peer, code, count, message)
        if self.on_refusal is not None:
            self.on_refusal(refusal, count)
        return refusal

    @property
    def total(self) -> int:
        """Every refusal so far."""
        with self._lock:
            return sum(self.counts.values())

    def as_dict(self) -> dict[str, object]:
        """For a report: the total and the counts by reason."""
        with self._lock:
            return {"total": sum(self.counts.values()), "by_reason": dict(self.counts)}

    def __iter__(self) -> Iterator[Refusal]:
        with self._lock:
            return iter(list(self._recent))

    def __len__(self) -> int:
        with self._lock:
            return len(self._recent)

    def __getitem__(self, index: int) -> Refusal:
        with self._lock:
            return self._recent[index]
