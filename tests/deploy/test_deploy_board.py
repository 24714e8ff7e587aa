"""Board files: the shipped ones load; mistakes name the file, the key and what is valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from host.deploy import (
    ACCESS,
    BoardError,
    CommandRunner,
    DeployError,
    FileTransfer,
    load_board,
    open_access,
    open_shell,
)
from host.deploy.access import SshAccess
from host.deploy.offline import engine_requirements
from host.deploy.unit import render_unit
from host.deploy.wheels import pip_download_argv

BOARDS = Path(__file__).resolve().parents[2] / "hw_tests" / "boards"
GOOD = """
name = "pi"
arch = "aarch64"
python = "3.11"
engine = "torch"
work_dir = "~/hiertrain"

[connection]
kind = "ssh"
host = "pi.local"
user = "pi"
identity_file = "keys/id_ed25519"

[link]
url = "socket://10.0.0.1:5555"
"""


def board_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "board.toml"
    path.write_text(text)
    return path


def test_shipped_board_files_load() -> None:
    virtual = load_board(BOARDS / "virtual.toml")
    assert (virtual.connection.kind, virtual.link.emulate, virtual.resolved_engine) == (
        "local",
        "3g",
        "ort",
    )
    qemu = load_board(BOARDS / "qemu-aarch64.toml")
    assert (qemu.arch, qemu.engine, qemu.connection.access_kind) == ("aarch64", "ort", "chroot")
    assert qemu.connection.rootfs == (BOARDS / "../../build/qemu-aarch64-rootfs").resolve()
    twin = load_board(BOARDS / "qemu-aarch64-torch.toml")
    assert (twin.engine, twin.connection.rootfs) == ("torch", qemu.connection.rootfs)
    pi = load_board(BOARDS / "example-pi.toml")
    assert (pi.connection.kind, pi.connection.user, pi.engine) == ("ssh", "pi", "torch")
    assert pi.connection.known_hosts == BOARDS / ".known_hosts"
    assert pi.profile is not None and pi.profile.step_time_s and pi.profile.source


def test_relative_paths_are_relative_to_the_board_file(tmp_path) -> None:
    board = load_board(board_file(tmp_path, GOOD))
    assert board.connection.identity_file == tmp_path / "keys" / "id_ed25519"
    assert board.connection.port == 22 and board.link.connect == "socket://10.0.0.1:5555"
    assert board.python_tag == "311"


@pytest.mark.parametrize(
    ("edit", "key", "valid"),
    [
        (lambda t: t.replace('arch = "aarch64"\n', ""), "arch: missing", "x86_64 | aarch64"),
        (lambda t: t.replace('"aarch64"', '"arm64"'), "arch: 'arm64' is not valid", "aarch64"),
        (lambda t: t.replace('"3.11"', '"3"'), "python: '3'", '"3.11"'),
        (lambda t: t.replace('"torch"', '"tvm"'), "engine: 'tvm'", "ort, torch, auto"),
        (lambda t: t.replace('host = "pi.local"\n', ""), "[connection] host: missing", "host"),
        (lambda t: t.replace('kind = "ssh"', 'kind = "usb"'), "[connection] kind", "serial"),
        (lambda t: t.replace('user = "pi"', 'usr = "pi"'), "[connection] usr: unknown", "user"),
        (lambda t: t.replace('user = "pi"', "port = 70000"), "[connection] port", "1..65535"),
        (lambda t: t.replace('user = "pi"', 'port = "22"'), "[connection] port", "TCP port"),
        (lambda t: t.replace("socket://10.0.0.1:5555", "10.0.0.1"), "[link] url", "socket://"),
        (lambda t: t + "[profile]\nslowdown = 2\nstep_time_s = 1.0\n", "[profile]", "exactly one"),
        (lambda t: t.split("[connection]")[0], "connection: missing table", "kind"),
        (lambda t: t.replace('work_dir = "~/hiertrain"', 'work_dir = "/"'), "work_dir", "own"),
    ],
)
def test_board_file_errors_name_file_key_and_what_is_valid(tmp_path, edit, key, valid) -> None:
    path = board_file(tmp_path, edit(GOOD))
    with pytest.raises(BoardError) as caught:
        load_board(path)
    message = str(caught.value)
    assert str(path) in message and key in message and valid in message, message


def test_link_emulation_spec_is_checked(tmp_path) -> None:
    path = board_file(tmp_path, GOOD.replace('url = "socket://10.0.0.1:5555"', 'emulate = "5g"'))
    with pytest.raises(BoardError, match=r"\[link\] emulate: bad link spec '5g'.*3g"):
        load_board(path)


def test_not_toml_and_missing_file(tmp_path) -> None:
    with pytest.raises(BoardError, match="not valid TOML"):
        load_board(board_file(tmp_path, "name = \n"))
    with pytest.raises(BoardError, match="does not exist"):
        load_board(tmp_path / "nope.toml")


def test_access_is_chosen_by_connection_kind(tmp_path) -> None:
    assert set(ACCESS) == {"local", "chroot", "ssh", "serial"}
    board = load_board(board_file(tmp_path, GOOD))
    access = open_access(board)
    try:
        assert isinstance(access, SshAccess) and access.target == "pi@pi.local"
        assert (
            "BatchMode=yes" in access.options
            and "StrictHostKeyChecking=accept-new" in access.options
        )
        assert f"UserKnownHostsFile={tmp_path / '.known_hosts'}" in access.options
    finally:
        access.close()
    serial = board_file(
        tmp_path,
        GOOD.split("[connection]")[0]
        + '[connection]\nkind = "serial"\ndevice = "/dev/ttyUSB0"\nkey_file = "board.key"\n',
    )
    (tmp_path / "board.key").write_text("5e" * 32)
    # A serial board moves files (to its agent) and runs no commands: labgrid's split.
    with open_access(load_board(serial)) as files_only:
        assert isinstance(files_only, FileTransfer) and not isinstance(files_only, CommandRunner)
    with pytest.raises(BoardError, match="the HIL suite needs a shell on the board"):
        open_shell(load_board(serial), "the HIL suite")
    qemu = load_board(BOARDS / "qemu-aarch64.toml")
    if not qemu.connection.rootfs.is_dir():
        with pytest.raises(BoardError, match="make qemu-rootfs"):
            open_access(qemu)


def test_engine_wheels_per_platform(tmp_path) -> None:
    board = load_board(board_file(tmp_path, GOOD))
    assert engine_requirements(board) == ("edge-torch", ["torch==2.8.0"])
    # aarch64 / Python 3.11: no wheel on PyPI; our build is vendored, pinned by its version.
    ort = dataclasses.replace(board, engine="ort")
    assert engine_requirements(ort) == ("edge", ["onnxruntime-training==1.21.0+cpu"])
    assert dataclasses.replace(board, engine="auto").resolved_engine == "ort"
    # Another Python on aarch64: neither published nor vendored.
    with pytest.raises(
        BoardError, match=r'use engine = "torch", or build ORT training from source'
    ):
        engine_requirements(dataclasses.replace(ort, python="3.12"))
    assert dataclasses.replace(board, engine="auto", python="3.12").resolved_engine == "torch"
    x86 = dataclasses.replace(board, arch="x86_64", engine="auto")
    assert engine_requirements(x86) == ("edge", ["onnxruntime-training==1.19.2"])
    argv = pip_download_argv(board, ["numpy>=1.24"], tmp_path)
    joined = " ".join(argv)
    assert (
        "download --no-deps --only-binary=:all:" in joined
        and "--platform manylinux_2_28_aarch64" in joined
    )
    assert "--python-version 3.11 --implementation cp --abi cp311" in joined


def test_systemd_unit_runs_the_current_release(tmp_path) -> None:
    board = load_board(
        board_file(tmp_path, GOOD + '\n[service]\ndata = "cifar10:/data/c 10"\nepochs = 5\n')
    )
    unit = render_unit(board, "/home/pi/hiertrain", "torch", user="pi")
    assert "ExecStart=/home/pi/hiertrain/current/venv/bin/edge-runtime run" in unit
    assert "--bundle /home/pi/hiertrain/current/edge --connect socket://10.0.0.1:5555" in unit
    assert '--engine torch --data "cifar10:/data/c 10" --epochs 5 --edge-id pi' in unit
    assert "User=pi" in unit and "Restart=on-failure" in unit
    assert "WantedBy=multi-user.target" in unit
    no_link = dataclasses.replace(board, link=dataclasses.replace(board.link, url=None))
    with pytest.raises(BoardError, match=r"\[link\] url or serial is missing"):
        render_unit(no_link, "/w", "torch")


def test_dependency_markers_are_evaluated_for_the_board(tmp_path, monkeypatch) -> None:
    """pip alone would take x86_64-only dependencies along for an aarch64 board (torch's
    nvidia-* wheels); the board's own markers decide, level by level. From a local index only."""
    from deploy_support import write_wheel

    from host.deploy.wheels import download_for_board

    index = tmp_path / "index"
    index.mkdir()
    write_wheel(
        index,
        "engine-pkg",
        "2.0",
        [
            'gpu-runtime==12.8; platform_machine == "x86_64"',
            "common>=1.1",
            'fast-math; extra == "fast"',
            'old-backport; python_version < "3.8"',
        ],
    )
    write_wheel(index, "common", "1.0", [])
    write_wheel(index, "common", "1.2", ["leaf"])
    write_wheel(index, "leaf", "0.1", [])
    write_wheel(index, "fast-math", "1.0", [])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    board = load_board(board_file(tmp_path, GOOD))  # aarch64, Python 3.11
    dest = tmp_path / "wheels"
    lines: list[str] = []
    got = download_for_board(board, ["engine-pkg", "common"], dest, lines.append)
    assert sorted(p.name for p in got) == [
        "common-1.2-py3-none-any.whl",
        "engine_pkg-2.0-py3-none-any.whl",
        "leaf-0.1-py3-none-any.whl",
    ]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in got)
    assert any(line.startswith("Saved") for line in lines)
    x86 = dataclasses.replace(board, arch="x86_64")
    with pytest.raises(DeployError, match="gpu-runtime==12.8"):
        download_for_board(x86, ["engine-pkg[fast]"], tmp_path / "x86", lines.append)
