"""`hostctl deploy` to a board on a serial line: FILE_CHUNK messages to `edge-runtime agent`.

A board with only a UART to the host has no SSH. Its `edge-runtime agent --link /dev/ttyAMA0
--dir DIR --key-file board.key` connects to the host; here the host opens the board file's
`device`, authenticates the agent with the same key (`[connection] key_file`), asks what the
board has, and pushes the edge artifacts it lacks in chunks. Every frame carries a CRC32 and is
retransmitted until acknowledged; every file ends with its sha256, which the agent checks; the
commit names every file of the release, and the agent verifies them all and loads the bundle
before `current` moves. The session protocol is in `edge_runtime/agent.py`.

Only the edge artifacts cross a serial line: the edge runtime itself is installed on the board
already (it is what receives them), and wheels of 100 MB would take hours at 115200 baud.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from edge_runtime.agent import RUN_PREFIX
from edge_runtime.bundle import MANIFEST, BundleError, load_bundle, read_key_file, sha256_file
from edge_runtime.deploy_messages import Commit, CommitVerdict, FileChunk, FileVerdict, Inventory
from edge_runtime.link import HostListener, HostSession, LinkConfig, LinkError
from edge_runtime.link.control import Error
from edge_runtime.link.messages import Malformed, Message
from host.deploy.board import Board
from host.deploy.errors import BoardError, DeployError
from host.deploy.offline import DEPLOY_MANIFEST
from host.deploy.release import DeployResult, transfer_progress

CONNECT_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0

Reply = TypeVar("Reply", Inventory, FileVerdict, CommitVerdict)


@dataclass(frozen=True)
class EdgeArtifacts:
    """What crosses the line: the edge half of a bundle, each file's sha256, the release id."""

    root: Path  # the directory holding edge/
    files: dict[str, str]  # "edge/<name>" -> sha256
    manifest_sha256: str

    @property
    def release(self) -> str:
        return self.manifest_sha256[:12]

    def size(self, names: list[str]) -> int:
        return sum((self.root / name).stat().st_size for name in names)


def edge_artifacts(bundle_dir: Path) -> tuple[EdgeArtifacts, str | None]:
    """The edge artifacts of a deploy bundle or an export bundle, verified; and a note, if any."""
    note = None
    if (bundle_dir / DEPLOY_MANIFEST).is_file():
        wheels = sorted((bundle_dir / "wheels").glob("*.whl"))
        if wheels:
            note = (
                f"{len(wheels)} wheel(s) of the deploy bundle stay on the host: over serial only "
                "the edge artifacts are sent (the board's edge runtime is installed already)"
            )
    edge = bundle_dir if bundle_dir.name == "edge" else bundle_dir / "edge"
    try:
        bundle = load_bundle(edge)
    except BundleError as exc:
        raise BoardError(f"--bundle {bundle_dir}: {exc}") from None
    if bundle.side != "edge":
        raise BoardError(f"--bundle {bundle_dir}: no edge/ artifacts in it")
    root = edge.parent
    # load_bundle has just hashed what the manifest lists: only the rest is hashed here.
    known = {**bundle.manifest.get("files", {}), f"edge/{MANIFEST}": bundle.manifest_sha256}
    files = {}
    for p in sorted(edge.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            files[rel] = known.get(rel) or sha256_file(p)
    return EdgeArtifacts(root, files, bundle.manifest_sha256), note


def chunk_size(baud: int) -> int:
    """About a quarter second of line per chunk: a corrupted frame costs little to resend."""
    return max(1024, min(64 * 1024, baud // 40))


def deploy_serial(
    board: Board,
    bundle_dir: Path,
    console: Console,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> DeployResult:
    """Deploy the edge artifacts of `bundle_dir` to the agent on `board`'s serial device."""
    conn = board.connection
    assert conn.kind == "serial" and conn.device and conn.key_file
    artifacts, note = edge_artifacts(bundle_dir)
    try:
        key = read_key_file(conn.key_file)
    except BundleError as exc:
        raise BoardError(f"board file {board.path}: [connection] key_file: {exc}") from None
    if note:
        console.print(f"[yellow]note:[/] {note}")
    listener = HostListener(key, None, config=LinkConfig(baudrate=conn.baud))
    sessions: queue.Queue[HostSession] = queue.Queue()
    try:
        listener.serve_serial(conn.device, sessions.put)
    except LinkError as exc:
        raise DeployError("connect", str(exc)) from exc
    try:
        session = _await_agent(listener, sessions, board, connect_timeout)
        try:
            return _Session(session, board, artifacts, console).run()
        finally:
            session.close("deploy over")
    finally:
        listener.close()


def _await_agent(
    listener: HostListener, sessions: queue.Queue[HostSession], board: Board, timeout: float
) -> HostSession:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            session = sessions.get(timeout=min(left, 0.5))
        except queue.Empty:
            if listener.refusals:
                raise DeployError(
                    "connect",
                    f"the board's agent was refused: {listener.refusals[-1]} (its --key-file "
                    f"must hold the key of {board.connection.key_file})",
                ) from None
            continue
        if session.run_id.startswith(RUN_PREFIX):
            return session
        # A training run on this line, not the agent: tell it and wait on.
        session.send(Error("protocol", "this host deploys; run `edge-runtime agent` to receive"))
        session.close("not a deploy agent")
    raise DeployError(
        "connect",
        f"no deploy agent answered on {board.connection.device} within {timeout:.0f} s: start "
        f"`edge-runtime agent --link <its serial device> --dir {board.work_dir} --key-file "
        "<the board's copy of the key>` on the board",
    )


class _Session:
    """One deploy over an authenticated session: compare, upload, verify, switch."""

    def __init__(
        self, session: HostSession, board: Board, artifacts: EdgeArtifacts, console: Console
    ) -> None:
        self.session, self.board, self.art, self.console = session, board, artifacts, console
        self.current: str | None = None
        self.verdicts: dict[str, FileVerdict] = {}

    def fail(self, step: str, cause: str) -> DeployError:
        return DeployError(step, cause, self.current)

    def reply(self, kind: type[Reply], timeout: float, step: str) -> Reply:
        """The agent's next message of type `kind`; file verdicts on the way are recorded."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._take(min(left, 1.0), step)
            if isinstance(msg, kind):
                return msg
        name = kind.TYPE.name.removeprefix("DEPLOY_").lower()
        raise self.fail(step, f"no {name} from the agent within {timeout:.0f} s")

    def _take(self, timeout: float, step: str) -> Message | None:
        """One message from the agent, None after `timeout`.

        A lost link or an ERROR fails `step`; a file verdict is recorded (a refusal fails).
        """
        try:
            msg = self.session.recv(timeout=timeout)
        except LinkError as exc:
            raise self.fail(step, f"the link to the agent was lost: {exc}") from exc
        if msg is None:
            return None
        if isinstance(msg, Error):
            raise self.fail(step, f"the agent says {msg.code}: {msg.message}")
        if isinstance(msg, Malformed):
            raise self.fail(step, f"the agent sent a message the host cannot read: {msg.error}")
        if isinstance(msg, FileVerdict):
            self._verdict(msg)
        return msg

    def _verdict(self, verdict: FileVerdict) -> None:
        self.verdicts[verdict.path] = verdict
        if not verdict.ok:
            raise self.fail("verify", f"the board refused {verdict.path}: {verdict.error}")

    def run(self) -> DeployResult:
        art, board = self.art, self.board
        inv = self.reply(Inventory, REPLY_TIMEOUT_S, "compare")
        self.current = inv.current
        self.console.print(
            f"[bold]{board.name}[/] (serial {board.connection.device} @ {board.connection.baud}, "
            f"agent {self.session.edge_id!r}): current release {self.current or 'none'}, "
            f"deploying {art.release}"
        )
        result = DeployResult(art.release, f"{board.work_dir}/releases/{art.release}", self.current)
        there = inv.files
        if art.release in inv.releases:
            result.present = sorted(art.files)  # the release is on the board: nothing to send
        else:
            for name, sha in art.files.items():
                (result.reused if there.get(name) == sha else result.sent).append(name)
        for name in result.up_to_date:
            self.console.print(f"up to date  {name}")
        if self.current == art.release and not result.sent:
            return result
        self.upload(result.sent)
        self.session.send(Commit(art.release, art.manifest_sha256, art.files))
        done = self.reply(
            CommitVerdict, REPLY_TIMEOUT_S + self._line_time(art.size(list(art.files))), "switch"
        )
        if not done.ok:
            raise self.fail(done.step or "switch", f"the board refused: {done.error}")
        result.switched = done.switched
        self.console.print(
            f"verify: {len(art.files)} files match their sha256 on the board"
            + (f"; switch: current -> releases/{art.release}" if result.switched else "")
        )
        return result

    def _line_time(self, nbytes: int) -> float:
        """Seconds the line needs for `nbytes` (8N1: 10 bits a byte), with room for resends."""
        return 3 * nbytes * 10 / self.board.connection.baud

    def upload(self, names: list[str]) -> None:
        if not names:
            return
        size = chunk_size(self.board.connection.baud)
        total = self.art.size(names)
        with transfer_progress(self.console) as progress:
            task = progress.add_task("upload", total=total)
            for name in names:
                progress.update(task, description=f"send {name}")
                self._send_file(name, size, lambda n: progress.advance(task, n))
        # What may still be on its way: a window of chunks.
        wait = REPLY_TIMEOUT_S + self._line_time(min(total, size * LinkConfig().window))
        deadline = time.monotonic() + wait
        while any(name not in self.verdicts for name in names):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [n for n in names if n not in self.verdicts]
                raise self.fail("upload", f"the agent did not confirm {missing} in {wait:.0f} s")
            self.reply(FileVerdict, left, "upload")
        for name in names:
            self.console.print(f"sent        {name}")

    def _send_file(self, name: str, size: int, advance) -> None:
        path = self.art.root / name
        total = path.stat().st_size
        sha = self.art.files[name]
        with open(path, "rb") as fh:
            offset = 0
            while True:
                data = fh.read(size)
                if not data and offset < total:
                    raise self.fail("upload", f"{name} shrank on the host while being sent")
                last = offset + len(data) >= total
                try:
                    self.session.send(FileChunk(name, offset, total, data, sha if last else ""))
                except LinkError as exc:
                    raise self.fail("upload", f"the link to the agent was lost: {exc}") from exc
                offset += len(data)
                advance(len(data))
                # Verdicts that have arrived, without waiting: a refusal stops the upload.
                while self._take(0, "upload") is not None:
                    continue
                if last:
                    break
