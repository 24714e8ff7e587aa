"""Board access, split the way labgrid splits its protocols: move files, and run commands.

`FileTransfer` puts files on a board and gets them back; `CommandRunner` runs a command there.
Deploy and the HIL suite ask for what they need and no more: a board with a shell (this
machine, a root filesystem under chroot, a Pi over SSH) offers both, as `BoardAccess`; a board
reached only over a serial line offers file transfer alone, through the `edge-runtime agent`
running on it (`host/deploy/agent_access.py`). The board file's `[connection]` picks the
implementation through `ACCESS`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_runtime.errors import HiertrainError
from host.deploy.board import Board, BoardError, Connection

Command = Sequence[str] | str


class BoardAccessError(HiertrainError):
    """A command on the board failed, timed out, or the board could not be reached."""

    def __init__(self, message: str, result: subprocess.CompletedProcess | None = None):
        super().__init__(message)
        self.result = result


def _tail(text: str | None, lines: int = 6) -> str:
    kept = (text or "").strip().splitlines()[-lines:]
    return " | ".join(kept)


class FileTransfer(ABC):
    """Copy files to and from a board (labgrid's FileTransferProtocol)."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy the local file `local` to the path `remote` on the board."""

    @abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy the file `remote` on the board to `local` here."""

    def describe(self) -> str:
        """Where the board is, for messages."""
        return type(self).__name__

    def close(self) -> None:  # noqa: B027 - a no-op unless the access holds a connection
        """Release connections; the default holds none."""

    def __enter__(self) -> FileTransfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommandRunner(ABC):
    """Run commands on a board (labgrid's CommandProtocol)."""

    @abstractmethod
    def _run(self, command: Command, timeout: float | None) -> subprocess.CompletedProcess:
        """Run `command` (argv, or a shell string) on the board; text output captured."""

    def describe(self) -> str:
        """Where commands run, for messages."""
        return type(self).__name__

    def run(
        self, command: Command, check: bool = True, timeout: float | None = 120.0
    ) -> subprocess.CompletedProcess:
        """Run `command` on the board: an argv list (quoted for you) or a shell string.

        With `check`, a non-zero exit raises BoardAccessError carrying the command's stderr.
        """
        shown = command if isinstance(command, str) else shlex.join(command)
        try:
            result = self._run(command, timeout)
        except subprocess.TimeoutExpired:
            raise BoardAccessError(
                f"`{shown}` on {self.describe()} timed out after {timeout} s"
            ) from None
        if check and result.returncode != 0:
            raise BoardAccessError(
                f"`{shown}` on {self.describe()} exited {result.returncode}: "
                f"{_tail(result.stderr) or _tail(result.stdout) or 'no output'}",
                result,
            )
        return result


class BoardAccess(FileTransfer, CommandRunner):
    """A board with a shell: it runs commands and moves files (what a full deploy and HIL need)."""

    def __enter__(self) -> BoardAccess:
        return self


class LocalAccess(BoardAccess):
    """The board is this machine (the virtual board).

    Commands run in hostctl's environment: the directory of the Python that runs hostctl comes
    first on PATH, so `python3` on a local board is that Python.
    """

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.env = env

    @classmethod
    def from_connection(cls, conn: Connection) -> LocalAccess:
        return cls()

    def describe(self) -> str:
        return "this machine"

    def _run(self, command: Command, timeout: float | None) -> subprocess.CompletedProcess:
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, Path(remote).expanduser())

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(Path(remote).expanduser(), local)


class ChrootAccess(BoardAccess):
    """A root filesystem of another architecture on this machine, run under chroot.

    With qemu-user-static registered in binfmt_misc, an arm64 rootfs runs here as if it were
    the board (docs/boards.md: `make qemu-rootfs`). Board paths are paths inside the rootfs.
    """

    def __init__(self, rootfs: Path) -> None:
        if not rootfs.is_dir():
            raise BoardError(
                f"root filesystem {rootfs} does not exist: build it with `make qemu-rootfs`"
            )
        self.rootfs = rootfs

    @classmethod
    def from_connection(cls, conn: Connection) -> ChrootAccess:
        assert conn.rootfs is not None
        return cls(conn.rootfs)

    def describe(self) -> str:
        return f"chroot {self.rootfs}"

    def _host_path(self, remote: str) -> Path:
        if not remote.startswith("/"):
            raise BoardAccessError(f"{remote}: paths in a chroot board must be absolute")
        return self.rootfs / remote.lstrip("/")

    def _run(self, command: Command, timeout: float | None) -> subprocess.CompletedProcess:
        inner = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        argv = ["chroot", str(self.rootfs), "/usr/bin/env", "HOME=/root", *inner]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, self._host_path(remote))

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(self._host_path(remote), local)


class SshAccess(BoardAccess):
    """A board over SSH with the OpenSSH client (`ssh`, `scp`), never asking for a password.

    BatchMode=yes fails instead of prompting; StrictHostKeyChecking=accept-new records a new
    board's host key in the project's known_hosts and refuses one that changed. One master
    connection is shared by every command and copy (ControlMaster), so a deploy of many small
    files does not pay a handshake per file.
    """

    def __init__(self, conn: Connection) -> None:
        if not shutil.which("ssh") or not shutil.which("scp"):
            raise BoardError("the OpenSSH client (ssh, scp) is not installed on this machine")
        self.conn = conn
        self.target = f"{conn.user}@{conn.host}" if conn.user else str(conn.host)
        # A short path: unix socket names are limited to ~100 bytes.
        self._control_dir = tempfile.mkdtemp(prefix="ht-ssh-")
        options = [
            "BatchMode=yes",
            "StrictHostKeyChecking=accept-new",
            f"ConnectTimeout={max(1, round(conn.connect_timeout_s))}",
            "ServerAliveInterval=15",
            "ControlMaster=auto",
            f"ControlPath={self._control_dir}/%C",
            "ControlPersist=60",
            "LogLevel=ERROR",
        ]
        if conn.known_hosts is not None:
            conn.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            options.append(f"UserKnownHostsFile={conn.known_hosts}")
        if conn.identity_file is not None:
            options += [f"IdentityFile={conn.identity_file}", "IdentitiesOnly=yes"]
        options += conn.options
        self.options = [arg for opt in options for arg in ("-o", opt)]

    @classmethod
    def from_connection(cls, conn: Connection) -> SshAccess:
        return cls(conn)

    def describe(self) -> str:
        return f"{self.target}:{self.conn.port}"

    def _run(self, command: Command, timeout: float | None) -> subprocess.CompletedProcess:
        remote = command if isinstance(command, str) else shlex.join(command)
        argv = ["ssh", *self.options, "-p", str(self.conn.port), self.target, remote]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if result.returncode == 255:  # ssh's own failure: not the command's exit status
            raise BoardAccessError(
                f"cannot reach {self.describe()} over ssh: {_tail(result.stderr) or 'exit 255'}",
                result,
            )
        return result

    def _scp(self, src: str, dst: str, timeout: float) -> None:
        argv = ["scp", "-q", *self.options, "-P", str(self.conn.port), src, dst]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise BoardAccessError(
                f"scp {src} -> {dst} failed: {_tail(result.stderr) or result.returncode}", result
            )

    def put(self, local: Path, remote: str, timeout: float = 3600.0) -> None:
        self._scp(str(local), f"{self.target}:{remote}", timeout)

    def get(self, remote: str, local: Path, timeout: float = 3600.0) -> None:
        self._scp(f"{self.target}:{remote}", str(local), timeout)

    def close(self) -> None:
        subprocess.run(
            ["ssh", *self.options, "-p", str(self.conn.port), "-O", "exit", self.target],
            capture_output=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(self._control_dir, ignore_errors=True)


def _agent_access(conn: Connection) -> FileTransfer:
    # Imported on use: the agent's access brings the link stack, which a shell board never needs.
    from host.deploy.agent_access import AgentAccess

    return AgentAccess.from_connection(conn)


# connection kind (or a local board's runner) -> what opens its access
ACCESS: dict[str, Callable[[Connection], FileTransfer]] = {
    "local": LocalAccess.from_connection,
    "chroot": ChrootAccess.from_connection,
    "ssh": SshAccess.from_connection,
    "serial": _agent_access,
}


def open_access(board: Board) -> FileTransfer:
    """The access for `board`'s `[connection]`: a BoardAccess, or file transfer alone (serial)."""
    kind = board.connection.access_kind
    if kind not in ACCESS:
        raise BoardError(
            f"board file {board.path}: [connection] kind = {kind!r} is not one of "
            f"{', '.join(ACCESS)}"
        )
    return ACCESS[kind](board.connection)


def open_shell(board: Board, why: str) -> BoardAccess:
    """The access for `board` when `why` needs commands run on it; BoardError if it has no shell."""
    access = open_access(board)
    if isinstance(access, BoardAccess):
        return access
    access.close()
    raise BoardError(
        f"board file {board.path}: {why} needs a shell on the board, and "
        f"{board.connection.describe()} moves files only (to `edge-runtime agent`); "
        "use a local or ssh connection for it"
    )
