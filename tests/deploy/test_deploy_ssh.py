"""Deploy over SSH to a real OpenSSH server on 127.0.0.1 (the sshd fixture), into a tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import EDGE_FILES, write_board

from host.deploy import (
    BoardAccess,
    DeployError,
    deploy,
    load_board,
    open_access,
)

HOSTCTL = [sys.executable, "-m", "host.cli"]
ALL_EDGE = [
    "edge/checkpoint",
    "edge/eval_model.onnx",
    "edge/link.key",
    "edge/manifest.json",
    "edge/optimizer_model.onnx",
    "edge/training_model.onnx",
]
WHEEL = "wheels/hiertrain-0.1.0-py3-none-any.whl"


def current_of(work: Path) -> str:
    return os.readlink(work / "current")


class SpyAccess(BoardAccess):
    """The real access, recording every upload; optionally flips a byte of one on the board."""

    def __init__(self, inner: BoardAccess, corrupt: str | None = None):
        self.inner, self.corrupt, self.puts = inner, corrupt, []

    def _run(self, command, timeout):
        return self.inner._run(command, timeout)

    def put(self, local: Path, remote: str) -> None:
        self.inner.put(local, remote)
        self.puts.append(remote)
        if self.corrupt and remote.endswith(self.corrupt):
            self.inner.run(f"printf 'Z' | dd of={remote} bs=1 seek=7 conv=notrunc 2>/dev/null")

    def get(self, remote: str, local: Path) -> None:
        self.inner.get(remote, local)

    def close(self) -> None:
        self.inner.close()


def test_first_copies_second_up_to_date_changed_artifact_resent(
    ssh_board_file, deploy_bundle, tmp_path
) -> None:
    board = load_board(ssh_board_file)
    work = Path(board.work_dir)
    first = deploy_bundle(board, "d1")

    r1 = deploy(board, tmp_path / "d1")
    assert r1.sent == sorted([*ALL_EDGE, WHEEL]) and r1.up_to_date == []
    assert r1.installed and r1.switched and r1.previous is None
    assert current_of(work) == f"releases/{first.release}"
    edge_runtime = work / "current" / "venv" / "bin" / "edge-runtime"
    assert subprocess.run([edge_runtime, "--help"], capture_output=True).returncode == 0

    with SpyAccess(open_access(board)) as spy:
        r2 = deploy(board, tmp_path / "d1", access=spy)
    assert spy.puts == []  # nothing copied, not even the deploy manifest
    assert r2.sent == [] and r2.up_to_date == sorted([*ALL_EDGE, WHEEL])
    assert not r2.installed and not r2.switched

    second = deploy_bundle(board, "d2", **{"training_model.onnx": b"new weights"})
    assert second.release != first.release
    with SpyAccess(open_access(board)) as spy:
        r3 = deploy(board, tmp_path / "d2", access=spy)
    # The artifact, and the bundle manifest that holds its sha256; nothing else crosses.
    assert r3.sent == ["edge/manifest.json", "edge/training_model.onnx"]
    sent = sorted(p.removeprefix(f"{work}/releases/{second.release}/") for p in spy.puts)
    assert sent == ["deploy-manifest.json", "edge/manifest.json", "edge/training_model.onnx"]
    assert WHEEL in r3.reused and len(r3.up_to_date) == 5
    assert r3.previous == first.release and current_of(work) == f"releases/{second.release}"
    assert (work / "current/edge/training_model.onnx").read_bytes() == b"new weights"
    # The previous release is intact (its files were linked, never written through).
    old = work / "releases" / first.release / "edge" / "training_model.onnx"
    assert old.read_bytes().startswith(b"\x01training")


def test_corrupted_upload_is_detected_and_current_kept(
    ssh_board_file, deploy_bundle, tmp_path
) -> None:
    board = load_board(ssh_board_file)
    work = Path(board.work_dir)
    first = deploy_bundle(board, "d1")
    deploy(board, tmp_path / "d1")
    second = deploy_bundle(board, "d2", checkpoint=b"trained further")

    access = SpyAccess(open_access(board), corrupt="edge/checkpoint")
    with access, pytest.raises(DeployError) as caught:
        deploy(board, tmp_path / "d2", access=access)
    err = caught.value
    assert err.step == "verify" and "upload corrupted" in err.cause
    assert "edge/checkpoint" in err.cause and err.current == first.release
    assert current_of(work) == f"releases/{first.release}"
    assert (work / "current/edge/checkpoint").read_bytes() == EDGE_FILES["checkpoint"]

    # A clean retry sends only the file that arrived corrupted.
    retry = deploy(board, tmp_path / "d2")
    assert retry.sent == ["edge/checkpoint"]
    assert current_of(work) == f"releases/{second.release}"


def test_hostctl_bundle_and_deploy_over_ssh_with_systemd_unit(
    ssh_board_file, edge_bundle, tmp_path
) -> None:
    deploy_dir = tmp_path / "deploy"

    def hostctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HOSTCTL, *args], capture_output=True, text=True, timeout=120)

    made = hostctl(
        "bundle",
        "--board",
        str(ssh_board_file),
        "--bundle",
        str(edge_bundle()),
        "--out",
        str(deploy_dir),
        "--skip-deps",
    )
    assert made.returncode == 0, made.stderr
    assert (deploy_dir / "deploy-manifest.json").is_file() and "release" in made.stderr

    first = hostctl(
        "deploy", "--board", str(ssh_board_file), "--bundle", str(deploy_dir), "--systemd"
    )
    assert first.returncode == 0, first.stderr
    assert "sent        edge/training_model.onnx" in first.stderr
    assert "switch: current -> releases/" in first.stderr
    work = Path(load_board(ssh_board_file).work_dir)
    units = [work / "hiertrain-edge.service", work / "systemd" / "hiertrain-edge.service"]
    unit = next(p for p in units if p.is_file()).read_text()
    assert (
        f"ExecStart={work}/current/venv/bin/edge-runtime run --bundle {work}/current/edge" in unit
    )
    assert "--connect socket://127.0.0.1:5555 --engine ort" in unit and "--codec fp16" in unit

    again = hostctl("deploy", "--board", str(ssh_board_file), "--bundle", str(deploy_dir))
    assert again.returncode == 0, again.stderr
    assert "up to date  edge/training_model.onnx" in again.stderr
    assert "sent " not in again.stderr and "is current and up to date" in again.stderr


def test_unreachable_board_fails_at_connect_with_exit_1(tmp_path, deploy_bundle) -> None:
    board_file = write_board(
        tmp_path / "gone.toml",
        tmp_path / "board",
        f'kind = "ssh"\nhost = "127.0.0.1"\nport = {_closed_port()}\nconnect_timeout_s = 2\n'
        f'known_hosts = "{tmp_path / "kh"}"',
    )
    deploy_bundle(load_board(board_file), "d")
    out = subprocess.run(
        [*HOSTCTL, "deploy", "--board", str(board_file), "--bundle", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert "step 'connect' failed" in lines[-1] and "cannot reach" in lines[-1]
    assert "Traceback" not in out.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
