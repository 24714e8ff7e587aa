"""The sender's on-disk spool: every message not yet consumed by the receiver, one file each.

Layout of the directory: ``<seq:010d>.msg`` (``HSP1`` | crc32 | u8 message type | payload)
per message and ``next_seq`` (decimal). Every file is written to a temporary name, fsynced and
renamed, so a SIGKILL leaves either the old or the new file, never half of one; the CRC finds
what a rename cannot (a damaged disk, a hand-edited file) when the spool is opened, before
anything is sent. ``next_seq`` is rewritten before consumed entries are deleted, so the next
sequence number never goes backwards.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

from edge_runtime.link.errors import SpoolError

_SUFFIX = ".msg"
_NEXT = "next_seq"
_ENTRY = struct.Struct("<4sI")  # magic, crc32 of (type | payload)
_MAGIC = b"HSP1"
_WAY_OUT = "start over with --fresh (the host keeps what it trained and skips it)"


class Spool:
    """A bounded directory of unconsumed messages keyed by sequence number."""

    def __init__(
        self, directory: Path, max_messages: int, max_bytes: int, fsync: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[int, int] = {}
        self.next_seq = 1
        self._load()

    def _load(self) -> None:
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                path.unlink()  # a write that never reached its rename
            elif path.name.endswith(_SUFFIX):
                try:
                    seq = int(path.name[: -len(_SUFFIX)])
                except ValueError as exc:
                    raise SpoolError(f"unexpected file in spool: {path}") from exc
                _decode(path, path.read_bytes())
                self._sizes[seq] = path.stat().st_size - _ENTRY.size
        next_file = self.directory / _NEXT
        try:
            stored = int(next_file.read_text()) if next_file.exists() else 1
        except (OSError, ValueError):
            raise SpoolError(f"spool counter {next_file} is damaged: {_WAY_OUT}") from None
        self.next_seq = max([stored, *(s + 1 for s in self._sizes)])

    @property
    def count(self) -> int:
        """Number of messages held."""
        return len(self._sizes)

    @property
    def bytes(self) -> int:
        """Bytes held (message files only)."""
        return sum(self._sizes.values())

    def seqs(self) -> list[int]:
        """Sequence numbers held, ascending."""
        return sorted(self._sizes)

    def has_room(self, size: int) -> bool:
        """Whether a message of ``size`` payload bytes fits now."""
        if size + 1 > self.max_bytes:
            raise SpoolError(
                f"a message of {size} bytes never fits a spool of {self.max_bytes} bytes"
            )
        return self.count < self.max_messages and self.bytes + size + 1 <= self.max_bytes

    def append(self, mtype: int, payload: bytes) -> int:
        """Store a message durably under the next sequence number and return that number."""
        seq = self.next_seq
        body = bytes([mtype]) + payload
        self._write(
            self.directory / f"{seq:010d}{_SUFFIX}", _ENTRY.pack(_MAGIC, zlib.crc32(body)) + body
        )
        self._sizes[seq] = len(payload) + 1
        self.next_seq = seq + 1
        return seq

    def get(self, seq: int) -> tuple[int, bytes]:
        """The (message type, payload) stored under ``seq``."""
        path = self.directory / f"{seq:010d}{_SUFFIX}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SpoolError(f"spool entry {seq} unreadable: {exc}") from exc
        return _decode(path, data)

    def __contains__(self, seq: int) -> bool:
        return seq in self._sizes

    def size(self, seq: int) -> int:
        """Stored size of ``seq`` in bytes."""
        return self._sizes[seq]

    def advance_to(self, next_seq: int) -> None:
        """Never hand out a sequence number below ``next_seq`` again."""
        if next_seq > self.next_seq:
            self.next_seq = next_seq
            self._write(self.directory / _NEXT, str(next_seq).encode())

    def drop_upto(self, seq: int) -> int:
        """Delete every message with sequence number <= ``seq``; return how many went."""
        gone = [s for s in self._sizes if s <= seq]
        if not gone:
            return 0
        self._write(self.directory / _NEXT, str(self.next_seq).encode())
        for s in gone:
            (self.directory / f"{s:010d}{_SUFFIX}").unlink(missing_ok=True)
            del self._sizes[s]
        return len(gone)

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolError(
                    f"disk full: the spool {self.directory} needs {len(data)} more bytes; "
                    "free space there and rerun with --resume (nothing was written half)"
                ) from None
            raise SpoolError(f"cannot write the spool entry {path}: {exc}") from None
        if self.fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _decode(path: Path, data: bytes) -> tuple[int, bytes]:
    """(message type, payload) of one spool entry, after checking its magic and CRC."""
    if len(data) <= _ENTRY.size:
        what = "empty" if not data else "truncated"
        raise SpoolError(f"spool entry {path} is {what}: {_WAY_OUT}")
    magic, crc = _ENTRY.unpack_from(data)
    body = data[_ENTRY.size :]
    if magic != _MAGIC or zlib.crc32(body) != crc:
        raise SpoolError(f"spool entry {path} is damaged (checksum mismatch): {_WAY_OUT}")
    return body[0], body[1:]


class MemoryStore:
    """The spool's interface held in memory: for the host's messages to the edge."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: dict[int, tuple[int, bytes]] = {}
        self._bytes = 0
        self.next_seq = 1

    @property
    def count(self) -> int:
        """Number of messages held."""
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes

    def seqs(self) -> list[int]:
        """Sequence numbers held, ascending."""
        return sorted(self._items)

    def has_room(self, size: int) -> bool:
        """Whether a message of ``size`` payload bytes fits now."""
        if size + 1 > self.max_bytes:
            raise SpoolError(
                f"a message of {size} bytes never fits a store of {self.max_bytes} bytes"
            )
        return self.count < self.max_messages and self._bytes + size + 1 <= self.max_bytes

    def append(self, mtype: int, payload: bytes) -> int:
        """Keep a message under the next sequence number and return that number."""
        seq = self.next_seq
        self._items[seq] = (mtype, payload)
        self._bytes += len(payload) + 1
        self.next_seq = seq + 1
        return seq

    def get(self, seq: int) -> tuple[int, bytes]:
        """The (message type, payload) kept under ``seq``."""
        return self._items[seq]

    def __contains__(self, seq: int) -> bool:
        return seq in self._items

    def size(self, seq: int) -> int:
        """Stored size of ``seq`` in bytes."""
        return len(self._items[seq][1]) + 1

    def advance_to(self, next_seq: int) -> None:
        """Never hand out a sequence number below ``next_seq`` again."""
        self.next_seq = max(self.next_seq, next_seq)

    def drop_upto(self, seq: int) -> int:
        """Forget every message with sequence number <= ``seq``; return how many went."""
        gone = [s for s in self._items if s <= seq]
        for s in gone:
            self._bytes -= len(self._items.pop(s)[1]) + 1
        return len(gone)
