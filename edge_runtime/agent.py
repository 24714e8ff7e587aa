"""`edge-runtime agent`: receive deploys over the link (a serial line, usually) and make them current.

A board reached only by a UART has no SSH to deploy through. The agent runs there, connects to
the host like a training run does (same framing, CRC32 per frame, retransmission, HMAC
handshake with a pre-shared key), and takes the edge artifacts in FILE_CHUNK messages. Under
its directory it keeps the layout `hostctl deploy` makes over SSH, so `current/edge` is the
bundle to train with either way:

    releases/<id>/edge/...   one per deployed bundle; <id> = sha256 of its manifest, 12 digits
    current -> releases/<id>  switched atomically (rename of a symlink)
    .agent/                   the link's spool and the release being received

One deploy session (run id ``deploy-<random>``; messages in order, each way; the classes are
in edge_runtime/deploy_messages.py):

    edge -> Inventory      current, releases, files: {path: sha256} of the current release
    host -> FileChunk ...  for each file the board lacks ("edge/<name>"); sha256 on the last
    edge -> FileVerdict    path, ok, sha256 | error; per finished file
    host -> Commit         release, manifest_sha256, files: {path: sha256}
    edge -> CommitVerdict  release, ok, switched | step and error

A file whose bytes do not hash to the sha256 its last chunk names is deleted and reported; the
commit checks every file of the release (sent now, or already on the board) and loads the
bundle, verifying its manifest, before `current` moves. Anything that fails leaves `current`
where it was.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from edge_runtime.bundle import (
    MANIFEST,
    BundleError,
    load_bundle,
    mismatched_files,
    sha256_file,
    sha256_listing,
    sha256_under,
)
from edge_runtime.deploy_messages import Commit, CommitVerdict, FileChunk, FileVerdict, Inventory
from edge_runtime.errors import HiertrainError
from edge_runtime.link import EdgeLink, HandshakeRefused, LinkConfig, LinkError
from edge_runtime.link.control import Bye, Error
from edge_runtime.link.messages import Malformed, Message

RELEASES = "releases"
CURRENT = "current"
AGENT_DIR = ".agent"
RUN_PREFIX = "deploy-"  # the run id of a deploy session; a host refuses anything else
NO_BUNDLE = "none"  # what HELLO carries as bundle sha256 while no release is current
MAX_RELEASE_BYTES = 4 << 30  # a bound on what one deploy may write to the board's disk

Log = Callable[[str], None]


class AgentError(HiertrainError):
    """The agent cannot run: a bad directory, a refused key."""


@dataclass
class _Incoming:
    """The file being received: its chunks arrive in order (the link sequences them)."""

    rel: str
    total: int
    part: Path
    fh: IO[bytes]
    digest: Any = field(default_factory=hashlib.sha256)
    written: int = 0


def _safe_rel(path: str) -> str:
    """A release-relative path under edge/, or ValueError: nothing may land outside the release."""
    p = PurePosixPath(path)
    if p.is_absolute() or not p.parts or ".." in p.parts or "\\" in path or "\x00" in path:
        raise ValueError(f"refused path {path!r}: expected edge/<name> inside the release")
    if p.parts[0] != "edge" or len(p.parts) < 2 or str(p) != path:
        raise ValueError(f"refused path {path!r}: expected edge/<name> inside the release")
    return path


class Releases:
    """The agent's directory: what is deployed, and the one release being received."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / RELEASES).mkdir(exist_ok=True)
        self.staging = self.root / AGENT_DIR / "staging"
        self._incoming: _Incoming | None = None
        self._received: dict[str, str] = {}  # rel -> sha256 of what arrived whole this session
        self._bytes = 0

    # -- what is on the board ---------------------------------------------------------------------

    def current(self) -> str | None:
        """The current release id, or None."""
        link = self.root / CURRENT
        if not link.is_symlink():
            return None
        return PurePosixPath(os.readlink(link)).name

    def current_manifest_sha256(self) -> str:
        """What HELLO carries: the current bundle's manifest sha256, or "none"."""
        cur = self.current()
        manifest = self.root / RELEASES / cur / "edge" / MANIFEST if cur else None
        return sha256_file(manifest) if manifest and manifest.is_file() else NO_BUNDLE

    def release_files(self, release: str) -> dict[str, str]:
        """{edge/<name>: sha256} of a release on the board (empty if it is not there)."""
        base = self.root / RELEASES / release
        if not base.is_dir():
            return {}
        return sha256_listing(base, base / "edge")

    def inventory(self) -> Inventory:
        """The first message of a session: what the host need not send."""
        cur = self.current()
        releases = sorted(p.name for p in (self.root / RELEASES).iterdir() if p.is_dir())
        return Inventory(cur, releases, self.release_files(cur) if cur else {})

    # -- receiving --------------------------------------------------------------------------------

    def begin(self) -> None:
        """A new session: whatever a previous one left half-received is discarded."""
        self._abort_incoming()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self._received.clear()
        self._bytes = 0

    def on_chunk(self, chunk: FileChunk) -> FileVerdict | None:
        """Write one chunk; returns the file's verdict once its last chunk is in, else None."""
        try:
            rel = _safe_rel(chunk.path)
            inc = self._incoming
            if chunk.offset == 0:
                if inc is not None:
                    raise ValueError(f"{inc.rel} ended after {inc.written} of {inc.total} bytes")
                if chunk.total < 0 or self._bytes + chunk.total > MAX_RELEASE_BYTES:
                    raise ValueError(
                        f"{rel}: {chunk.total} bytes would take this release past "
                        f"{MAX_RELEASE_BYTES} bytes"
                    )
                part = self.staging / (rel + ".part")
                part.parent.mkdir(parents=True, exist_ok=True)
                # Open across chunks (closed in _finish or _abort_incoming): one file per session.
                fh = open(part, "wb")  # noqa: SIM115
                inc = self._incoming = _Incoming(rel, chunk.total, part, fh)
            elif inc is None or inc.rel != rel or inc.written != chunk.offset:
                where = f"{inc.rel} at {inc.written}" if inc else "no file"
                raise ValueError(f"{rel}: chunk at offset {chunk.offset}, expected {where}")
            if chunk.total != inc.total or inc.written + len(chunk.data) > inc.total:
                raise ValueError(f"{rel}: chunk runs past the file's {inc.total} bytes")
            inc.fh.write(chunk.data)
            inc.digest.update(chunk.data)
            inc.written += len(chunk.data)
            self._bytes += len(chunk.data)
            if inc.written < inc.total:
                return None
            return self._finish(inc, chunk.sha256)
        except (ValueError, OSError) as exc:
            self._abort_incoming()
            return FileVerdict(chunk.path, ok=False, error=str(exc))

    def _finish(self, inc: _Incoming, expected: str) -> FileVerdict:
        inc.fh.flush()
        os.fsync(inc.fh.fileno())
        inc.fh.close()
        self._incoming = None
        actual = inc.digest.hexdigest()
        if actual != expected:
            inc.part.unlink()
            return FileVerdict(
                inc.rel,
                ok=False,
                error=f"sha256 differs: received {actual[:16]}..., expected "
                f"{(expected or 'none')[:16]}...; the file was discarded",
            )
        os.replace(inc.part, self.staging / inc.rel)
        self._received[inc.rel] = actual
        return FileVerdict(inc.rel, ok=True, sha256=actual)

    def _abort_incoming(self) -> None:
        inc, self._incoming = self._incoming, None
        if inc is not None:
            inc.fh.close()
            inc.part.unlink(missing_ok=True)

    # -- commit -----------------------------------------------------------------------------------

    def commit(self, request: Commit) -> CommitVerdict:
        """Assemble, verify and switch to the release the host names; the verdict to send back."""
        release = request.release
        manifest_sha = request.manifest_sha256
        try:
            files = {_safe_rel(rel): sha for rel, sha in request.files.items()}
        except ValueError as exc:
            return _failed(release, "commit", f"malformed commit request: {exc}")
        if self._incoming is not None:
            inc = self._incoming
            self._abort_incoming()
            return _failed(release, "upload", f"{inc.rel} is incomplete ({inc.written} bytes)")
        if release != manifest_sha[:12] or not release.isalnum():
            return _failed(release, "commit", f"release id {release!r} is not its manifest's")
        target = self.root / RELEASES / release
        if target.is_dir():
            problem = _check_release(target, files, manifest_sha)
            if problem is None:
                return self._switch(release)
            shutil.rmtree(target)  # a damaged copy: rebuild it from what arrived and what is here
        for rel, sha in files.items():
            if self._received.get(rel) == sha:
                continue
            source = self._find(rel, sha)
            if source is None:
                return _failed(release, "verify", f"{rel} was neither sent nor found on the board")
            dest = self.staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        extra = {
            p.relative_to(self.staging).as_posix()
            for p in self.staging.rglob("*")
            if p.is_file() and p.relative_to(self.staging).as_posix() not in files
        }
        if extra:
            return _failed(release, "verify", f"unexpected files {sorted(extra)}")
        problem = _check_release(self.staging, files, manifest_sha)
        if problem is not None:
            return _failed(release, "verify", problem)
        _fsync_dir(self.staging / "edge")
        os.replace(self.staging, target)
        _fsync_dir(target.parent)
        return self._switch(release)

    def _find(self, rel: str, sha: str) -> Path | None:
        """A file with these bytes in a release already on the board, current first."""
        cur = self.current()
        names = [cur] if cur else []
        names += sorted(p.name for p in (self.root / RELEASES).iterdir() if p.name != cur)
        for name in names:
            candidate = self.root / RELEASES / name / rel
            if candidate.is_file() and sha256_file(candidate) == sha:
                return candidate
        return None

    def _switch(self, release: str) -> CommitVerdict:
        if self.current() == release:
            return CommitVerdict(release, ok=True, switched=False)
        tmp = self.root / f".{CURRENT}.{secrets.token_hex(4)}"
        os.symlink(f"{RELEASES}/{release}", tmp)
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)
        return CommitVerdict(release, ok=True, switched=True)


def _check_release(base: Path, files: dict[str, str], manifest_sha: str) -> str | None:
    """None if `base` holds exactly these files and a bundle with this manifest, else why not."""
    for bad in mismatched_files(files, sha256_under(base), first_only=True):
        if bad.actual is None:
            return f"{bad.rel} is missing"
        return f"{bad.rel} has sha256 {bad.actual[:16]}..., expected {bad.expected[:16]}..."
    if files.get(f"edge/{MANIFEST}") != manifest_sha:
        return f"edge/{MANIFEST} is not the manifest of release {manifest_sha[:12]}"
    try:  # every file was hashed above: the manifest need only list the same hashes
        bundle = load_bundle(base / "edge", verify=False)
    except BundleError as exc:
        return str(exc)
    for rel, sha in bundle.manifest.get("files", {}).items():
        if rel.startswith("edge/") and files.get(rel) != sha:
            return f"the manifest lists {rel} with sha256 {sha[:16]}..., the release differs"
    return None


def _failed(release: str, step: str, error: str) -> CommitVerdict:
    return CommitVerdict(release, ok=False, step=step, error=error)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class SessionResult:
    """How one deploy session ended."""

    release: str | None = None
    ok: bool = False
    switched: bool = False
    files: int = 0
    error: str | None = None


def serve_session(
    link: EdgeLink, releases: Releases, idle_timeout: float, log: Log
) -> SessionResult:
    """Run one deploy session on an established link until the host says BYE."""
    releases.begin()
    link.send(releases.inventory())
    result = SessionResult()
    idle = 0.0
    while True:
        msg: Message | None = link.poll(1.0)
        if msg is None:
            idle += 1.0
            if idle >= idle_timeout:
                result.error = f"the host sent nothing for {idle_timeout:.0f} s"
                return result
            continue
        idle = 0.0
        reply: FileVerdict | CommitVerdict | None = None
        if isinstance(msg, FileChunk):
            reply = releases.on_chunk(msg)
            if reply is not None:
                result.files += 1
                if not reply.ok:
                    result.error = f"{reply.path}: {reply.error}"
                log(f"{reply.path}: {'ok' if reply.ok else reply.error}")
        elif isinstance(msg, Commit):
            reply = releases.commit(msg)
            result.release, result.ok = reply.release, reply.ok
            result.switched = reply.switched
            result.error = None if reply.ok else f"{reply.step}: {reply.error}"
            log(
                f"release {result.release} is current"
                if result.ok
                else f"release {result.release} refused at {result.error}"
            )
        elif isinstance(msg, Error):
            result.error = f"host: {msg.code}: {msg.message}"
            return result
        elif isinstance(msg, Malformed):
            result.error = f"the host sent a message this agent cannot read: {msg.error}"
            return result
        elif isinstance(msg, Bye):
            if result.release is None and result.error is None:
                result.ok = True  # nothing to do: the board was up to date
            return result
        if reply is not None:
            link.send(reply)


def run_agent(
    root: Path,
    url: str,
    key: bytes,
    edge_id: str,
    config: LinkConfig,
    *,
    once: bool = False,
    idle_timeout: float = 120.0,
    log: Log = print,
) -> SessionResult:
    """Serve deploy sessions on `url` (forever, or one with `once`); returns the last result.

    A refused handshake (wrong key, another protocol version) raises AgentError: retrying
    cannot fix it. A host that is not there yet is waited for.
    """
    releases = Releases(root)
    spool = Path(root) / AGENT_DIR / "spool"
    log(f"deploy agent on {url}, directory {root}, current release {releases.current() or 'none'}")
    while True:
        shutil.rmtree(spool, ignore_errors=True)  # each session is a stream of its own
        try:
            link = EdgeLink.connect(
                url,
                key=key,
                bundle_sha256=releases.current_manifest_sha256(),
                edge_id=edge_id,
                run_id=RUN_PREFIX + secrets.token_hex(4),
                spool_dir=spool,
                config=config,
            )
        except HandshakeRefused as exc:
            raise AgentError(f"the host refused this agent: {exc}") from exc
        except LinkError as exc:
            log(f"no host on {url} yet ({exc}); waiting")
            continue
        log("host connected: deploy session")
        try:
            with link:
                result = serve_session(link, releases, idle_timeout, log)
        except LinkError as exc:
            result = SessionResult(error=f"link lost: {exc}")
        if result.error:
            log(f"session ended: {result.error}")
        if once:
            return result
