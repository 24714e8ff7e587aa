"""File transfer to a board over a serial line: `edge-runtime agent` on the board receives.

A board with only a UART to the host has no shell to run commands through, so it offers one of
the two board-access protocols: file transfer (`host/deploy/access.py`). Its `edge-runtime agent
--link /dev/ttyAMA0 --dir DIR --key-file board.key` connects to the host; here the host opens the
board file's `device`, authenticates the agent with the same key (`[connection] key_file`), and
then asks it what it has (`inventory`), sends it files (`put`: FILE_CHUNK messages, each frame
CRC-checked and resent until acknowledged, each file ending with its sha256, which the agent
checks) and asks it to switch to a release (`commit`: the agent verifies every file and loads
the bundle before `current` moves). The agent's side is `edge_runtime/agent.py`.

Files go into the release the agent is receiving, by their path relative to the release
(`edge/<name>`); the agent sends no files back (it has no need to: the host holds every
release), so `get` says so.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge_runtime.agent import RUN_PREFIX
from edge_runtime.bundle import BundleError, read_key_file, sha256_file
from edge_runtime.deploy_messages import Commit, CommitVerdict, FileChunk, FileVerdict, Inventory
from edge_runtime.link import HostListener, HostSession, LinkConfig, LinkError
from edge_runtime.link.control import Error
from edge_runtime.link.handshake import REFUSAL_CODES
from edge_runtime.link.messages import Malformed, Message
from host.deploy.access import BoardAccessError, FileTransfer
from host.deploy.board import BoardError, Connection

CONNECT_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0

Reply = TypeVar("Reply", Inventory, FileVerdict, CommitVerdict)


def chunk_size(baud: int) -> int:
    """About a quarter second of line per chunk, the unit the agent writes and verifies. The
    link cuts a chunk into frames of its negotiated size (4 KiB on serial), each resent alone,
    so a corrupted byte costs one frame, not the chunk."""
    return max(1024, min(64 * 1024, baud // 40))


class _LinkLost(BoardAccessError):
    """The session with the agent ended (the agent gone, or starting a new session)."""


class AgentAccess(FileTransfer):
    """The `edge-runtime agent` on the far end of a serial line; it connects on first use."""

    def __init__(
        self, conn: Connection, key: bytes, connect_timeout: float = CONNECT_TIMEOUT_S
    ) -> None:
        assert conn.kind == "serial" and conn.device
        self.conn, self.key, self.connect_timeout = conn, key, connect_timeout
        self._listener: HostListener | None = None
        self._sessions: queue.Queue[HostSession] = queue.Queue()
        self._session: HostSession | None = None
        self.verdicts: dict[str, FileVerdict] = {}

    @classmethod
    def from_connection(
        cls, conn: Connection, connect_timeout: float = CONNECT_TIMEOUT_S
    ) -> AgentAccess:
        """The agent's access for a serial `[connection]`, its deploy key read from key_file."""
        assert conn.key_file is not None
        try:
            key = read_key_file(conn.key_file)
        except BundleError as exc:
            raise BoardError(f"[connection] key_file: {exc}") from None
        return cls(conn, key, connect_timeout)

    def describe(self) -> str:
        agent = f", agent {self._session.edge_id!r}" if self._session else ""
        return f"serial {self.conn.device} @ {self.conn.baud}{agent}"

    # -- connection ----------------------------------------------------------------------

    @property
    def session(self) -> HostSession:
        """The authenticated session with the agent, waiting for it on first use."""
        if self._session is None:
            self._session = self._connect()
        return self._session

    def _connect(self) -> HostSession:
        if self._listener is None:
            listener = HostListener(self.key, None, config=LinkConfig(baudrate=self.conn.baud))
            self._listener = listener
            try:
                listener.serve_serial(self.conn.device, self._sessions.put)
            except LinkError as exc:
                raise BoardAccessError(str(exc)) from exc
        listener = self._listener
        deadline = time.monotonic() + self.connect_timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                session = self._sessions.get(timeout=min(left, 0.5))
            except queue.Empty:
                # Noise or a frame left on the line by an earlier session is refused too
                # ("protocol"); only a refusal the agent cannot retry past ends the wait.
                final = [r for r in listener.refusals if r.code in REFUSAL_CODES]
                if final:
                    raise BoardAccessError(
                        f"the board's agent was refused: {final[-1]} (its "
                        f"--key-file must hold the key of {self.conn.key_file})"
                    ) from None
                continue
            if session.run_id.startswith(RUN_PREFIX):
                return session
            # A training run on this line, not the agent: tell it and wait on.
            session.send(
                Error("protocol", "this host deploys; run `edge-runtime agent` to receive")
            )
            session.close("not a deploy agent")
        raise BoardAccessError(
            f"no deploy agent answered on {self.conn.device} within {self.connect_timeout:.0f} s: "
            "start `edge-runtime agent --link <its serial device> --dir <its work dir> "
            "--key-file <the board's copy of the key>` on the board"
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close("deploy over")
            self._session = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- what the agent answers ----------------------------------------------------------

    def line_time(self, nbytes: int) -> float:
        """Seconds the line needs for `nbytes` (8N1: 10 bits a byte), with room for resends."""
        return 3 * nbytes * 10 / self.conn.baud

    def reply(self, kind: type[Reply], timeout: float) -> Reply:
        """The agent's next message of type `kind`; file verdicts on the way are recorded."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._take(min(left, 1.0))
            if isinstance(msg, kind):
                return msg
        name = kind.TYPE.name.removeprefix("DEPLOY_").lower()
        raise BoardAccessError(f"no {name} from the agent within {timeout:.0f} s")

    def _take(self, timeout: float) -> Message | None:
        """One message from the agent, None after `timeout`.

        A lost link, an ERROR or a refused file raises BoardAccessError; a verdict is recorded.
        """
        session = self.session
        try:
            msg = session.recv(timeout=timeout)
        except LinkError as exc:
            raise _LinkLost(f"the link to the agent was lost: {exc}") from exc
        if msg is None:
            return None
        if msg.seq:
            session.consumed(msg.seq)  # taken: a session that reconnects elsewhere learns so
        if isinstance(msg, Error):
            raise BoardAccessError(f"the agent says {msg.code}: {msg.message}")
        if isinstance(msg, Malformed):
            raise BoardAccessError(f"the agent sent a message the host cannot read: {msg.error}")
        if isinstance(msg, FileVerdict):
            self.verdicts[msg.path] = msg
            if not msg.ok:
                raise BoardAccessError(f"the board refused {msg.path}: {msg.error}")
        return msg

    def _send(self, msg: Message) -> None:
        try:
            self.session.send(msg)
        except LinkError as exc:
            raise BoardAccessError(f"the link to the agent was lost: {exc}") from exc

    # -- the protocol --------------------------------------------------------------------

    def inventory(self) -> Inventory:
        """What the board has: its current release, the releases kept, each file's sha256.

        The first session may be one the agent had with an earlier deploy whose BYE it never
        got (a lost frame): its link reconnects here after a silence, finds that this host
        knows nothing of what it consumed, and the agent starts a new session. That session's
        inventory is the one to go by; until it arrives nothing has been sent.
        """
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                return self.reply(Inventory, REPLY_TIMEOUT_S)
            except _LinkLost:
                if time.monotonic() > deadline:
                    raise
                self._session = None  # wait for the agent's next session (as for the first)

    def put(
        self,
        local: Path,
        remote: str,
        *,
        sha256: str | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> None:
        """Send `local` as `remote` (relative to the release) and wait for the agent's verdict."""
        self.verdicts.pop(remote, None)
        self.send_file(local, remote, sha256=sha256, advance=advance)
        self.wait_verdicts([remote], local.stat().st_size)

    def send_file(
        self,
        local: Path,
        remote: str,
        *,
        sha256: str | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> None:
        """Send `local` as `remote` in chunks without waiting for the verdict (`wait_verdicts`)."""
        sha = sha256 or sha256_file(local)
        size = chunk_size(self.conn.baud)
        total = local.stat().st_size
        with open(local, "rb") as fh:
            offset = 0
            while True:
                data = fh.read(size)
                if not data and offset < total:
                    raise BoardAccessError(f"{local} shrank on the host while being sent")
                last = offset + len(data) >= total
                self._send(FileChunk(remote, offset, total, data, sha if last else ""))
                offset += len(data)
                if advance is not None:
                    advance(len(data))
                # Verdicts that have arrived, without waiting: a refusal stops the upload.
                while self._take(0) is not None:
                    continue
                if last:
                    return

    def wait_verdicts(self, names: list[str], in_flight: int) -> None:
        """Wait until the agent has confirmed every file of `names`; `in_flight` bytes may still
        be on their way (at most a window of chunks)."""
        window = chunk_size(self.conn.baud) * LinkConfig().window
        wait = REPLY_TIMEOUT_S + self.line_time(min(in_flight, window))
        deadline = time.monotonic() + wait
        while any(name not in self.verdicts for name in names):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [n for n in names if n not in self.verdicts]
                raise BoardAccessError(f"the agent did not confirm {missing} in {wait:.0f} s")
            self.reply(FileVerdict, left)

    def get(self, remote: str, local: Path) -> None:
        raise BoardAccessError(
            f"cannot get {remote} from {self.describe()}: the deploy agent receives files and "
            "sends none back"
        )

    def commit(
        self, release: str, manifest_sha256: str, files: dict[str, str], size: int
    ) -> CommitVerdict:
        """Ask the agent to verify every file of `release` (`size` bytes in all) and switch
        `current` to it; its verdict says whether it did."""
        self._send(Commit(release, manifest_sha256, files))
        # The agent re-hashes and loads the whole release: as long as its bytes take on the line.
        return self.reply(CommitVerdict, REPLY_TIMEOUT_S + self.line_time(size))
