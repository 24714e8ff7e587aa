"""Deploy fixtures: a real OpenSSH server on 127.0.0.1, small edge bundles, board files."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_support import EDGE_FILES, ssh_connection, write_board, write_edge_bundle

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVERS = (Path("/usr/lib/openssh/sftp-server"), Path("/usr/libexec/openssh/sftp-server"))


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1 with its own host key, logging in the current user by key only."""
    if not SSHD.is_file():
        pytest.skip(f"{SSHD} is absent: apt-get install -y openssh-server")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("the OpenSSH client (ssh, scp, ssh-keygen) is not installed")
    sftp = next((p for p in SFTP_SERVERS if p.is_file()), None)
    root = tmp_path_factory.mktemp("sshd")
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    shutil.copyfile(root / "user_key.pub", root / "authorized_keys")
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {root / 'host_key'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                *([f"Subsystem sftp {sftp}"] if sftp else []),
                "",
            ]
        )
    )
    privsep = Path("/run/sshd")  # sshd's privilege separation directory
    if os.geteuid() == 0:
        privsep.mkdir(mode=0o755, exist_ok=True)
    elif not privsep.is_dir():
        pytest.skip(f"{privsep} is missing and only root can create it")
    log = root / "sshd.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_fh, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd did not listen on {port}: {log.read_text()[-2000:]}")
                time.sleep(0.05)
        yield SshServer(port, getpass.getuser(), root / "user_key", root / "known_hosts", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def hiertrain_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our wheel, built once: the sources may change under a long session, releases must not."""
    from host.deploy.offline import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def deploy_bundle(hiertrain_wheel: Path, edge_bundle, tmp_path: Path):
    """`deploy_bundle(board, "d1", **edge_changes)` -> a --skip-deps DeployBundle in tmp_path/d1."""
    from host.deploy import make_deploy_bundle

    def make(board, name: str, **changes: bytes):
        src = edge_bundle(f"{name}-export", **changes)
        return make_deploy_bundle(
            board, src, tmp_path / name, skip_deps=True, wheel=hiertrain_wheel
        )

    return make


@pytest.fixture
def edge_bundle(tmp_path: Path) -> Callable[..., Path]:
    """`edge_bundle(**changes)` -> an export bundle dir; same changes, same bytes."""

    def make(name: str = "bundle", **changes: bytes) -> Path:
        return write_edge_bundle(tmp_path / name, {**EDGE_FILES, **changes})

    return make


@pytest.fixture
def ssh_board_file(tmp_path: Path, sshd: SshServer) -> Path:
    """A board file for the test sshd, deploying into a throwaway directory."""
    return write_board(tmp_path / "ssh-board.toml", tmp_path / "board", ssh_connection(sshd))


@pytest.fixture
def local_board_file(tmp_path: Path) -> Path:
    """A local board (this machine) deploying into a throwaway directory."""
    return write_board(tmp_path / "local-board.toml", tmp_path / "board", 'kind = "local"')
