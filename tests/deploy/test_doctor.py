"""`hostctl doctor`: the host's packages and versions, and a board's deploy connection."""

from __future__ import annotations

import os
import pty
import socket

from click.testing import CliRunner
from deploy_support import write_board

from host.cli import cli


def test_doctor_lists_the_host_packages_with_versions() -> None:
    out = CliRunner().invoke(cli, ["doctor"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    for dist in ("torch", "onnx", "onnxruntime-training", "matplotlib", "tensorboard"):
        prefix = f"ok   {dist}: "
        assert any(line.startswith(prefix) and line[len(prefix)].isdigit() for line in lines), dist
    assert any(line.split(":")[0].endswith("link emulation") for line in lines)


def test_doctor_checks_a_serial_boards_device(tmp_path) -> None:
    leader, follower = pty.openpty()  # a real serial-like device
    try:
        present = write_board(
            tmp_path / "pty.toml",
            tmp_path,
            f'kind = "serial"\ndevice = "{os.ttyname(follower)}"\nkey_file = "k.key"',
        )
        out = CliRunner().invoke(cli, ["doctor", "--board", str(present)])
        assert out.exit_code == 0, out.output
        assert (
            f"ok   board test-board: serial {os.ttyname(follower)} @ 115200: present" in out.output
        )
    finally:
        os.close(leader)
        os.close(follower)
    absent = write_board(
        tmp_path / "gone.toml",
        tmp_path,
        'kind = "serial"\ndevice = "/dev/nonexistent-tty"\nkey_file = "k.key"',
    )
    out = CliRunner().invoke(cli, ["doctor", "--board", str(absent)])
    assert out.exit_code == 1
    assert "FAIL board test-board: serial /dev/nonexistent-tty @ 115200: absent" in out.output


def test_doctor_says_when_a_boards_ssh_port_does_not_answer(tmp_path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    board = write_board(
        tmp_path / "ssh.toml",
        tmp_path,
        f'kind = "ssh"\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 2',
    )
    out = CliRunner().invoke(cli, ["doctor", "--board", str(board)])
    assert out.exit_code == 1
    assert f"FAIL board test-board: ssh 127.0.0.1:{port}: " in out.output
    assert "refused" in out.output.lower()
