"""State on disk: versioned, checksummed, written atomically; reading checks all three.

Every file a run resumes from (the edge's progress, the host's tail checkpoints) goes through
here, so that a truncated, emptied, garbled, deleted or foreign file is found when the run
starts, named in one line with the way out, and never trained on.

Layout: a first line `hiertrain-state <kind> v<version> <size> <sha256>\\n`, then the payload.
Writing keeps the file it replaces as `<name>.prev`, the previous checkpoint to restore.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from edge_runtime.errors import HiertrainError, UsageFault

MAGIC = "hiertrain-state"
PREVIOUS = ".prev"


class StateError(HiertrainError):
    """A state file cannot be used: missing, damaged, foreign, or not writable."""

    def __init__(self, path: Path, problem: str, way_out: str) -> None:
        super().__init__(f"{path}: {problem}; {way_out}")
        self.path = path
        self.problem = problem
        self.way_out = way_out


class DiskFull(StateError):
    """The disk holding a state file is full: nothing half-written was left behind."""


def write_state(
    path: Path,
    payload: bytes,
    *,
    kind: str,
    version: int,
    fsync: bool = True,
    way_out: str = "free space there and restart: nothing was written half",
) -> None:
    """Write `payload` as a state file of `kind`, atomically; the old file becomes `.prev`.

    DiskFull (naming the path and the bytes needed, with `way_out`) when the disk is full."""
    path = Path(path)
    digest = hashlib.sha256(payload).hexdigest()
    head = f"{MAGIC} {kind} v{version} {len(payload)} {digest}\n".encode()
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(head)
            fh.write(payload)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if path.exists():
            os.replace(path, path.with_name(path.name + PREVIOUS))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        write_failed(path, exc, kind, len(head) + len(payload), way_out)


def write_failed(path: Path, exc: OSError, what: str, size: int, way_out: str) -> NoReturn:
    """Raise the one-line error for a failed write of ``size`` bytes of ``what`` to ``path``:
    DiskFull (with ``way_out``) when the disk or quota is full, else StateError."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFull(path, f"disk full writing {what} ({size} bytes needed)", way_out) from None
    raise StateError(
        path, f"cannot write {what}: {exc.strerror or exc}", "check the path"
    ) from None


def read_state(path: Path, *, kind: str, version: int, way_out: str) -> bytes:
    """The payload of a state file of `kind`, after checking its format, version and checksum.

    `way_out` is what the user can do when it is unusable (`--fresh`, restore `.prev`...).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StateError(path, f"{kind} is missing", way_out) from None
    except OSError as exc:
        raise StateError(path, f"{kind} unreadable: {exc.strerror or exc}", way_out) from None
    end = data.find(b"\n", 0, 512)
    fields = data[:end].decode("ascii", "replace").split(" ") if end > 0 else []
    if len(fields) != 5 or fields[0] != MAGIC:
        what = "empty" if not data else "not a hiertrain state file (damaged or foreign)"
        raise StateError(path, f"{kind} is {what}", way_out)
    _, found_kind, found_version, size, digest = fields
    if found_kind != kind:
        raise StateError(path, f"holds {found_kind}, not {kind}", way_out)
    if found_version != f"v{version}":
        raise StateError(
            path, f"{kind} format {found_version}, this build reads v{version}", way_out
        )
    payload = data[end + 1 :]
    if not size.isdigit() or len(payload) != int(size):
        raise StateError(path, f"{kind} is truncated ({len(payload)} of {size} bytes)", way_out)
    if hashlib.sha256(payload).hexdigest() != digest:
        raise StateError(path, f"{kind} is damaged (checksum mismatch)", way_out)
    return payload


def previous(path: Path) -> Path:
    """Where `write_state` kept the file that `path` replaced."""
    return Path(path).with_name(Path(path).name + PREVIOUS)


class DirectoryInUse(UsageFault):
    """Another process holds the state directory (a second `serve` or `run` on it)."""


@contextlib.contextmanager
def held_directory(directory: Path, what: str) -> Iterator[None]:
    """Hold `directory` (created if missing) for this process while the block runs.

    Two processes on one state directory write each other's checkpoints and spools (a host
    restarted while the old one still runs; a second board started with --fresh, which emptied
    the live run's spool). An exclusive flock on the directory itself refuses the second one
    in one line; the kernel drops the lock when its holder dies, SIGKILL included, so a
    restart after a crash is never refused.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryInUse(
                f"{directory} is in use by another {what} on this machine: stop that one, "
                "or give this one another directory"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
