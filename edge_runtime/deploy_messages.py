"""The deploy family of messages: `hostctl deploy` and `edge-runtime agent` over the link.

One session, in order each way (the conversation is described in edge_runtime/agent.py):

    edge -> Inventory        what the board has, so the host sends only what it lacks
    host -> FileChunk ...    each missing file in order, sha256 on its last chunk
    edge -> FileVerdict      per finished file: kept (its sha256) or discarded (why)
    host -> Commit           the release: every file's sha256 and the manifest's
    edge -> CommitVerdict    switched to it, or the step that refused it

Importing this module registers the family with the link.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from edge_runtime.link.header import MsgType
from edge_runtime.link.messages import JsonMessage, Message, register


@register
@dataclass
class FileChunk(Message):
    """A piece of a file: u16 len | path | u64 offset | u64 total | u8 len | sha256 hex | data.

    ``sha256`` (hex) is set on the last chunk only.
    """

    TYPE: ClassVar[MsgType] = MsgType.FILE_CHUNK
    path: str
    offset: int
    total: int
    data: bytes
    sha256: str = ""

    def encode(self) -> bytes:
        """Payload as in the class docstring."""
        path = self.path.encode()
        sha = self.sha256.encode()
        return (
            struct.pack("!H", len(path))
            + path
            + struct.pack("!QQB", self.offset, self.total, len(sha))
            + sha
            + bytes(self.data)
        )

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> FileChunk:
        """Decode the chunk."""
        view = memoryview(payload)
        (plen,) = struct.unpack_from("!H", view)
        path = bytes(view[2 : 2 + plen]).decode()
        offset, total, slen = struct.unpack_from("!QQB", view, 2 + plen)
        start = 2 + plen + 17
        sha = bytes(view[start : start + slen]).decode()
        return cls(path, offset, total, bytes(view[start + slen :]), sha)


@register
@dataclass
class Inventory(JsonMessage):
    """The agent's first message: its current release, every release, the current's files."""

    TYPE: ClassVar[MsgType] = MsgType.DEPLOY_INVENTORY
    current: str | None
    releases: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # "edge/<name>" -> sha256


@register
@dataclass
class FileVerdict(JsonMessage):
    """One received file: ``ok`` with its ``sha256``, or not ``ok`` with the ``error``."""

    TYPE: ClassVar[MsgType] = MsgType.DEPLOY_FILE
    path: str
    ok: bool
    sha256: str = ""
    error: str = ""


@register
@dataclass
class Commit(JsonMessage):
    """Make this release current: its id, its manifest's sha256 and every file's sha256."""

    TYPE: ClassVar[MsgType] = MsgType.DEPLOY_COMMIT
    release: str
    manifest_sha256: str
    files: dict[str, str]


@register
@dataclass
class CommitVerdict(JsonMessage):
    """How a commit ended: ``ok`` (``switched`` if current moved), or the ``step`` that failed."""

    TYPE: ClassVar[MsgType] = MsgType.DEPLOY_DONE
    release: str
    ok: bool
    switched: bool = False
    step: str = ""
    error: str = ""
