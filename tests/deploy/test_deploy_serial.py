"""Deploy over serial: `hostctl deploy` pushes FILE_CHUNKs to `edge-runtime agent` on a pty pair.

Real parts: two pseudo-terminals wired as a null-modem cable (host/linkemu/null_modem.py), pyserial
on both ends, the agent as its own process. The noisy line flips bits at a set bit error rate,
as a UART on a long cable does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from deploy_support import EDGE_FILES, write_board
from rich.console import Console

from edge_runtime.agent import Releases, _safe_rel
from edge_runtime.bundle import load_bundle, sha256_file
from edge_runtime.deploy_messages import Commit, FileChunk
from edge_runtime.link import LinkClosed
from edge_runtime.link.framing import encode_frame
from edge_runtime.link.header import Header, MsgType
from edge_runtime.link.transports import open_url
from host.cli import cli
from host.deploy import BoardError, DeployError
from host.deploy.agent_access import AgentAccess
from host.deploy.board import load_board
from host.deploy.commands import deploy_command
from host.deploy.serial import deploy_serial
from host.linkemu.null_modem import NullModem

BAUD = 1_000_000  # paced, so the line is slow enough for chunks and acks to interleave
KEY = "5e" * 32


def start_agent(device: str, board_dir: Path, key_file: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_runtime.cli",
            "agent",
            "--link",
            device,
            "--dir",
            str(board_dir),
            "--key-file",
            str(key_file),
            "--edge-id",
            "serial-board",
            "--baud",
            str(BAUD),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    return out


def serial_board(
    tmp_path: Path, device: str, key_file: Path, name: str = "serial.toml", baud: int = BAUD
) -> Path:
    connection = f'kind = "serial"\ndevice = "{device}"\nbaud = {baud}\nkey_file = "{key_file}"'
    return write_board(tmp_path / name, tmp_path / "board", connection)


@pytest.fixture
def line() -> Iterator[NullModem]:
    with NullModem(baud=BAUD) as modem:
        yield modem


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "board.key"
    path.write_text(KEY + "\n")
    return path


def current(board_dir: Path) -> str:
    return os.readlink(board_dir / "current")


def test_serial_deploy_copies_then_up_to_date_then_sends_only_changes(
    tmp_path: Path, line: NullModem, key_file: Path, edge_bundle
) -> None:
    board_dir = tmp_path / "board"
    agent = start_agent(line.paths[1], board_dir, key_file)
    board = serial_board(tmp_path, line.paths[0], key_file)
    quiet = Console(quiet=True)
    try:
        first = deploy_command(board, edge_bundle("b1"), False, quiet)
        assert first.switched and first.previous is None
        assert sorted(first.sent) == sorted(f"edge/{n}" for n in [*EDGE_FILES, "manifest.json"])
        assert current(board_dir) == f"releases/{first.release}"
        deployed = load_bundle(board_dir / "current" / "edge")  # verifies every sha256
        assert deployed.manifest_sha256 == load_bundle(tmp_path / "b1" / "edge").manifest_sha256
        for name, data in EDGE_FILES.items():
            assert (board_dir / "current" / "edge" / name).read_bytes() == data

        again = deploy_command(board, edge_bundle("b1"), False, quiet)
        assert again.sent == [] and not again.switched
        assert sorted(again.up_to_date) == sorted(first.sent)

        changed = deploy_command(
            board, edge_bundle("b2", checkpoint=b"\x05new" * 9000), False, quiet
        )
        assert sorted(changed.sent) == ["edge/checkpoint", "edge/manifest.json"]
        assert "edge/training_model.onnx" in changed.reused
        assert changed.switched and changed.previous == first.release
        assert current(board_dir) == f"releases/{changed.release}"
        assert (board_dir / "current/edge/checkpoint").read_bytes() == b"\x05new" * 9000
        load_bundle(board_dir / "current" / "edge")
        # The previous release stays whole beside it, and going back sends nothing.
        load_bundle(board_dir / "releases" / first.release / "edge")
        back = deploy_command(board, edge_bundle("b1"), False, quiet)
        assert back.sent == [] and back.switched
        assert current(board_dir) == f"releases/{first.release}"
    finally:
        log = stop(agent)
    assert "release" in log and "is current" in log


def test_a_lost_bye_does_not_make_the_next_deploy_read_an_old_inventory(
    tmp_path: Path, line: NullModem, key_file: Path, edge_bundle
) -> None:
    """The host's BYE is one unacknowledged frame: when it is lost the agent's session lives
    on, and after a silence its link reconnects to whichever host opens the line next. That
    host must not take the old session's inventory (sent before the first deploy's commit) for
    the board's: the next deploy finds the board up to date."""
    board_dir = tmp_path / "board"
    agent = start_agent(line.paths[1], board_dir, key_file)
    board = serial_board(tmp_path, line.paths[0], key_file)
    quiet = Console(quiet=True)
    try:
        access = AgentAccess.from_connection(load_board(board).connection)
        first = deploy_serial(load_board(board), edge_bundle("b1"), quiet, access)
        assert first.switched
        # The BYE lost on the line: the session ends on the host without a word to the agent.
        access._session.end(LinkClosed("BYE lost"))
        access._listener.close()
        again = deploy_command(board, edge_bundle("b1"), False, quiet)
        assert again.sent == [] and not again.switched
        assert sorted(again.up_to_date) == sorted(first.sent)
        assert current(board_dir) == f"releases/{first.release}"
    finally:
        log = stop(agent)
    assert log.count("is current") == 1, log  # the release was committed once, not resent


def test_a_stray_frame_before_the_agent_does_not_end_the_deploy(
    tmp_path: Path, line: NullModem, key_file: Path, edge_bundle, caplog
) -> None:
    """A frame on the line before any HELLO (here an ACK, as an earlier session leaves one) is
    refused as 'protocol'; the deploy goes on waiting for the agent, which comes later."""
    board_dir = tmp_path / "board"

    def stray() -> None:
        port = open_url(line.paths[1], BAUD, 0.05)
        port.write(encode_frame(Header(type=MsgType.ACK).pack()))
        port.close()

    agents: list[subprocess.Popen] = []
    timers = [
        threading.Timer(1.0, stray),  # the host's port is open by then
        threading.Timer(
            4.0, lambda: agents.append(start_agent(line.paths[1], board_dir, key_file))
        ),
    ]
    for timer in timers:
        timer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="hiertrain.link"):
            result = deploy_command(
                serial_board(tmp_path, line.paths[0], key_file),
                edge_bundle(),
                False,
                Console(quiet=True),
            )
    finally:
        for timer in timers:
            timer.join()
        log = stop(agents[0])
    assert "(protocol, #1): handshake first" in caplog.text
    assert result.switched and current(board_dir) == f"releases/{result.release}", log


def test_serial_deploy_through_bit_errors_arrives_intact(
    tmp_path: Path, key_file: Path, edge_bundle
) -> None:
    board_dir = tmp_path / "board"
    # 500 kbaud: 12.5 kB chunks. One bit in 250,000 flipped: about a third of the chunks are hit
    # and must be resent; ~11 flips are expected over the ~350 kB (3 or fewer: p ~ 0.1%).
    baud = 500_000
    with NullModem(baud=baud, bit_error_rate=4e-6, seed=3) as noisy:
        agent = start_agent(noisy.paths[1], board_dir, key_file, "--once")
        try:
            board = serial_board(tmp_path, noisy.paths[0], key_file, baud=baud)
            result = deploy_command(board, edge_bundle(), False, Console(quiet=True))
            assert agent.wait(timeout=30) == 0
        finally:
            log = stop(agent)
    assert noisy.bits_flipped >= 3, "the line corrupted too little to prove anything"
    assert current(board_dir) == f"releases/{result.release}"
    for name, data in EDGE_FILES.items():
        assert (board_dir / "current" / "edge" / name).read_bytes() == data, log


def test_serial_deploy_of_64k_chunks_through_garbled_and_dropped_bytes(
    tmp_path: Path, key_file: Path, edge_bundle
) -> None:
    """At 3 Mbaud a FILE_CHUNK is 64 KiB: the link cuts it into 4 KiB frames, each resent alone
    (issue 17), so a byte lost or garbled costs a frame, not the chunk."""
    board_dir = tmp_path / "board"
    baud = 3_000_000
    # About 4 flips and 4 drops expected in the bundle's bytes: enough to prove the point.
    with NullModem(baud=baud, byte_flip_rate=3e-5, byte_drop_rate=3e-5, seed=5) as noisy:
        agent = start_agent(noisy.paths[1], board_dir, key_file, "--once")
        try:
            board = serial_board(tmp_path, noisy.paths[0], key_file, baud=baud)
            result = deploy_command(board, edge_bundle(), False, Console(quiet=True))
            assert agent.wait(timeout=30) == 0
        finally:
            log = stop(agent)
    assert noisy.bytes_flipped + noisy.bytes_dropped >= 3, "too little noise to prove anything"
    assert current(board_dir) == f"releases/{result.release}"
    for name, data in EDGE_FILES.items():
        assert (board_dir / "current" / "edge" / name).read_bytes() == data, log


def test_serial_deploy_wrong_key_is_refused_and_nothing_changes(
    tmp_path: Path, line: NullModem, key_file: Path, edge_bundle
) -> None:
    board_dir = tmp_path / "board"
    wrong = tmp_path / "other.key"
    wrong.write_text("77" * 32)
    agent = start_agent(line.paths[1], board_dir, wrong, "--once")
    board = serial_board(tmp_path, line.paths[0], key_file)
    try:
        with pytest.raises(DeployError, match=r"connect.*refused.*key"):
            deploy_command(board, edge_bundle(), False, Console(quiet=True))
        assert agent.wait(timeout=30) == 1
    finally:
        log = stop(agent)
    assert "refused" in log and "key differs" in log
    assert not (board_dir / "current").exists()


def test_serial_deploy_without_agent_says_what_to_start(
    tmp_path: Path, line: NullModem, key_file: Path, edge_bundle
) -> None:
    board = serial_board(tmp_path, line.paths[0], key_file)
    t0 = time.monotonic()
    with pytest.raises(DeployError, match=r"no deploy agent answered.*edge-runtime agent"):
        deploy_serial(load_board(board), edge_bundle(), Console(quiet=True), connect_timeout=2)
    assert time.monotonic() - t0 < 10


def test_killed_agent_mid_upload_fails_cleanly_and_a_rerun_completes(
    tmp_path: Path, key_file: Path, edge_bundle
) -> None:
    """SIGKILL the agent while a large file crosses a slow line; the old release stays current."""
    board_dir = tmp_path / "board"

    def deploy_fast(bundle: Path):
        with NullModem(baud=BAUD) as modem:
            agent = start_agent(modem.paths[1], board_dir, key_file, "--once")
            try:
                board = serial_board(tmp_path, modem.paths[0], key_file)
                result = deploy_command(board, bundle, False, Console(quiet=True))
                assert agent.wait(timeout=60) == 0
            finally:
                stop(agent)
        return result

    first = deploy_fast(edge_bundle("b1"))
    big = edge_bundle("b2", **{"training_model.onnx": os.urandom(100_000)})
    slow = 100_000  # 10 kB/s: the 100 kB training model takes ~10 s
    with NullModem(baud=slow) as modem:
        connection = (
            f'kind = "serial"\ndevice = "{modem.paths[0]}"\nbaud = {slow}\nkey_file = "{key_file}"'
        )
        board = write_board(tmp_path / "slow.toml", board_dir, connection)
        agent = start_agent(modem.paths[1], board_dir, key_file, "--baud", str(slow))
        try:
            killer = threading.Timer(3.0, agent.kill)
            killer.start()
            with pytest.raises(DeployError, match=r"step '(upload|verify|switch)' failed"):
                deploy_command(board, big, False, Console(quiet=True))
            killer.join()
        finally:
            stop(agent)
    assert current(board_dir) == f"releases/{first.release}"
    load_bundle(board_dir / "current" / "edge")
    second = deploy_fast(big)
    assert current(board_dir) == f"releases/{second.release}"
    assert sha256_file(board_dir / "current/edge/training_model.onnx") == sha256_file(
        big / "edge" / "training_model.onnx"
    )
    assert not list((board_dir / ".agent" / "staging").rglob("*.part"))


# -- the agent's receiving end, message by message (real files, no link) -----------------------


def chunks(rel: str, data: bytes, size: int, sha: str) -> list[FileChunk]:
    out = []
    for offset in range(0, max(len(data), 1), size):
        piece = data[offset : offset + size]
        last = offset + len(piece) >= len(data)
        out.append(FileChunk(rel, offset, len(data), piece, sha if last else ""))
    return out


def test_agent_discards_a_file_whose_sha256_differs(tmp_path: Path) -> None:
    releases = Releases(tmp_path / "board")
    releases.begin()
    data = b"payload" * 1000
    verdicts = [releases.on_chunk(c) for c in chunks("edge/x.onnx", data, 1000, "ab" * 32)]
    assert verdicts[:-1] == [None] * (len(verdicts) - 1)
    assert verdicts[-1]["ok"] is False and "sha256 differs" in verdicts[-1]["error"]
    assert not list(releases.staging.rglob("*"))[1:]  # only the edge/ directory, no file


@pytest.mark.parametrize(
    "path", ["../escape", "edge/../../escape", "/etc/passwd", "edge", "other/x", "edge//x"]
)
def test_agent_refuses_paths_outside_the_release(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="refused path"):
        _safe_rel(path)
    releases = Releases(tmp_path / "board")
    releases.begin()
    verdict = releases.on_chunk(FileChunk(path, 0, 3, b"abc", "00" * 32))
    assert verdict is not None and verdict["ok"] is False
    assert not (tmp_path / "escape").exists()


def test_agent_refuses_out_of_order_and_oversized_chunks(tmp_path: Path) -> None:
    releases = Releases(tmp_path / "board")
    releases.begin()
    assert releases.on_chunk(FileChunk("edge/a", 0, 10, b"12345")) is None
    gap = releases.on_chunk(FileChunk("edge/a", 7, 10, b"890"))
    assert gap["ok"] is False and "expected edge/a at 5" in gap["error"]
    releases.begin()
    past = releases.on_chunk(FileChunk("edge/a", 0, 3, b"1234", "00" * 32))
    assert past["ok"] is False and "runs past" in past["error"]


def test_agent_commit_refuses_an_incomplete_release_and_keeps_current(
    tmp_path: Path, edge_bundle
) -> None:
    src = edge_bundle()
    bundle = load_bundle(src / "edge")
    files = {
        f"edge/{p.name}": sha256_file(p) for p in sorted((src / "edge").iterdir()) if p.is_file()
    }
    releases = Releases(tmp_path / "board")
    releases.begin()
    for rel in files:
        if rel != "edge/checkpoint":
            data = (src / rel).read_bytes()
            for c in chunks(rel, data, 4096, files[rel]):
                releases.on_chunk(c)
    request = Commit(bundle.manifest_sha256[:12], bundle.manifest_sha256, files)
    verdict = releases.commit(request)
    assert verdict["ok"] is False and verdict["step"] == "verify"
    assert "edge/checkpoint was neither sent nor found" in verdict["error"]
    assert releases.current() is None
    # A release id that is not its manifest's is refused before anything moves.
    forged = releases.commit(replace(request, release="0" * 12))
    assert forged["ok"] is False and "not its manifest's" in forged["error"]


def test_board_file_for_serial_needs_a_key_and_refuses_systemd(
    tmp_path: Path, key_file: Path, edge_bundle
) -> None:
    no_key = write_board(
        tmp_path / "nokey.toml", tmp_path / "board", 'kind = "serial"\ndevice = "/dev/ttyUSB0"'
    )
    result = CliRunner().invoke(cli, ["deploy", "--board", str(no_key), "--bundle", str(tmp_path)])
    assert result.exit_code == 2 and "key_file" in result.output
    board = serial_board(tmp_path, "/dev/ttyUSB0", key_file)
    with pytest.raises(BoardError, match="--systemd needs a shell"):
        deploy_command(board, edge_bundle(), True, Console(quiet=True))


def test_serial_board_access_is_file_transfer_only(
    tmp_path: Path, line: NullModem, key_file: Path
) -> None:
    """The serial board's access puts files (checked by the agent) and runs no commands."""
    from host.deploy import BoardAccessError, CommandRunner, FileTransfer, open_access

    board_dir = tmp_path / "board"
    agent = start_agent(line.paths[1], board_dir, key_file)
    payload = tmp_path / "weights.bin"
    payload.write_bytes(os.urandom(50_000))
    try:
        with open_access(load_board(serial_board(tmp_path, line.paths[0], key_file))) as access:
            assert isinstance(access, FileTransfer) and not isinstance(access, CommandRunner)
            assert access.inventory().current is None
            access.put(payload, "edge/weights.bin")
            verdict = access.verdicts["edge/weights.bin"]
            assert verdict.ok and verdict.sha256 == sha256_file(payload)
            staged = list(board_dir.rglob("weights.bin"))
            assert [p.read_bytes() for p in staged] == [payload.read_bytes()]
            with pytest.raises(BoardAccessError, match="board refused edge/other.bin: sha256"):
                access.put(payload, "edge/other.bin", sha256="0" * 64)
            with pytest.raises(BoardAccessError, match="receives files and sends none back"):
                access.get("edge/weights.bin", tmp_path / "back")
    finally:
        stop(agent)
    assert not (board_dir / "current").exists()
