"""Board keys and the host's revocation list.

A board's key is HMAC-SHA256(bundle key, edge id) (edge_runtime.link.handshake.board_key): the
host derives it from the edge id a HELLO claims, so a board holding only its own key can speak
only as itself. The revocation list is a state file in the host's state directory (versioned,
checksummed, written atomically); a running host reads it at every handshake.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_runtime.link.handshake import id_problem
from edge_runtime.statefile import StateError, read_state, write_state

REVOKED_FILE = "revoked-boards.state"
KIND, VERSION = "revoked-boards", 1
WAY_OUT = "restore it from revoked-boards.state.prev, or revoke the boards again"


def revoked_path(state_dir: Path) -> Path:
    """Where the revocation list of a host's state directory lives."""
    return Path(state_dir) / REVOKED_FILE


def read_revoked(state_dir: Path) -> dict[str, str]:
    """{edge id: when and why revoked}; empty if nothing was revoked. StateError if damaged."""
    path = revoked_path(state_dir)
    if not path.exists():
        return {}
    body = read_state(path, kind=KIND, version=VERSION, way_out=WAY_OUT)
    try:
        revoked = json.loads(body)
    except ValueError:
        raise StateError(path, "revocation list is not JSON", WAY_OUT) from None
    if not isinstance(revoked, dict) or not all(isinstance(v, str) for v in revoked.values()):
        raise StateError(path, "revocation list is not an object of strings", WAY_OUT)
    return revoked


def revoke(state_dir: Path, edge_id: str, note: str) -> bool:
    """Add ``edge_id`` to the list; False if it was there already."""
    problem = id_problem("edge id", edge_id)
    if problem is not None:
        raise ValueError(problem)
    revoked = read_revoked(state_dir)
    if edge_id in revoked:
        return False
    revoked[edge_id] = note
    body = json.dumps(revoked, sort_keys=True, indent=1).encode()
    write_state(revoked_path(state_dir), body, kind=KIND, version=VERSION)
    return True


class Revocations:
    """The check a host runs after a board authenticated: is this edge id revoked?"""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def __call__(self, edge_id: str) -> str | None:
        """Why ``edge_id`` is refused, or None if it is not revoked."""
        try:
            revoked = read_revoked(self.state_dir)
        except StateError as exc:
            # A damaged list must not let revoked boards back in: refuse everyone until fixed.
            return f"the host's revocation list is unusable: {exc}"
        if edge_id in revoked:
            return (
                f"board {edge_id!r} is revoked on this host ({revoked[edge_id]}); "
                "a new board needs a new --edge-id and `hostctl key issue` for it"
            )
        return None
