"""Board identity (issue 17, finding 11): a key per board derived from the bundle's secret and
the edge id, so a board can speak only as itself; a revocation list; the shared-key mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import load_bundle, read_key_file
from edge_runtime.link import AuthError, EdgeLink, HandshakeRefused, HostListener, LinkConfig
from edge_runtime.link.handshake import board_key
from edge_runtime.train.messages import Batch
from host.keys.boards import Revocations, read_revoked, revoke

pytestmark = pytest.mark.timeout(240)
BUNDLE_KEY = b"the bundle's secret, 32 bytes.."
BUNDLE = "ab" * 32
CONFIG = dict(
    spool_fsync=False, handshake_timeout=2.0, reconnect_timeout=5.0, read_timeout=0.02,
    keepalive_interval=0.2, dead_timeout=5.0,
)  # fmt: skip


def _connect(addr: tuple[str, int], key: bytes, edge_id: str, spool: Path) -> EdgeLink:
    return EdgeLink.connect(
        f"socket://{addr[0]}:{addr[1]}", key=key, bundle_sha256=BUNDLE, edge_id=edge_id,
        run_id="r", spool_dir=spool / edge_id, config=LinkConfig(**CONFIG),
    )  # fmt: skip


def _consume(session) -> None:
    from edge_runtime.link import LinkClosed

    while True:
        try:
            msg = session.recv(0.5)
        except LinkClosed:
            return
        if msg is not None and msg.seq:
            session.consumed(msg.seq)


@pytest.fixture
def board_host(tmp_path: Path):
    lst = HostListener(
        partial(board_key, BUNDLE_KEY), BUNDLE, config=LinkConfig(**CONFIG),
        revoked=Revocations(tmp_path / "state"),
    )  # fmt: skip
    addr = lst.serve_tcp("127.0.0.1", 0, _consume)
    yield lst, addr
    lst.close()


def _eventually(check, timeout: float = 10.0) -> bool:
    """Whether `check()` holds within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_board_speaks_with_its_own_key(board_host, tmp_path: Path) -> None:
    _lst, addr = board_host
    link = _connect(addr, board_key(BUNDLE_KEY, "b1"), "b1", tmp_path)
    link.send(Batch(0, 0, np.arange(2), np.ones((2, 4), np.float32)))
    link.flush(10)
    link.close()


@pytest.mark.parametrize(
    ("key", "edge_id"),
    [
        (board_key(BUNDLE_KEY, "b1"), "b2"),  # b1's key, claiming to be b2
        (BUNDLE_KEY, "b1"),  # the shared bundle key: refused in per-board mode
    ],
)
def test_a_board_cannot_speak_as_another(board_host, tmp_path: Path, key, edge_id) -> None:
    lst, addr = board_host
    with pytest.raises(AuthError, match=f"edge '{edge_id}'"):
        _connect(addr, key, edge_id, tmp_path)
    # The host counts a refusal just after it tells the peer: the peer may read it first.
    assert _eventually(lambda: lst.refusals.counts == {"auth": 1}), lst.refusals.counts


def test_a_revoked_board_is_refused_with_a_clear_error(board_host, tmp_path: Path) -> None:
    lst, addr = board_host
    assert revoke(tmp_path / "state", "b1", "revoked today: stolen") is True
    assert revoke(tmp_path / "state", "b1", "again") is False
    with pytest.raises(HandshakeRefused) as info:
        _connect(addr, board_key(BUNDLE_KEY, "b1"), "b1", tmp_path)
    assert info.value.code == "auth"
    assert "board 'b1' is revoked" in info.value.message and "stolen" in info.value.message
    assert _eventually(lambda: lst.refusals.counts == {"revoked": 1}), lst.refusals.counts
    link = _connect(addr, board_key(BUNDLE_KEY, "b2"), "b2", tmp_path)  # the others go on
    link.close()


def test_a_damaged_revocation_list_lets_no_board_in(board_host, tmp_path: Path) -> None:
    _lst, addr = board_host
    revoke(tmp_path / "state", "b1", "x")
    path = tmp_path / "state" / "revoked-boards.state"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(HandshakeRefused, match="revocation list is unusable"):
        _connect(addr, board_key(BUNDLE_KEY, "b2"), "b2", tmp_path)


def test_the_shared_key_mode_takes_the_bundle_key_for_any_id(tmp_path: Path) -> None:
    lst = HostListener(BUNDLE_KEY, BUNDLE, config=LinkConfig(**CONFIG))
    addr = lst.serve_tcp("127.0.0.1", 0, _consume)
    try:
        for edge_id in ("b1", "b2"):
            _connect(addr, BUNDLE_KEY, edge_id, tmp_path).close()
        with pytest.raises(AuthError):
            _connect(addr, board_key(BUNDLE_KEY, "b1"), "b1", tmp_path)
    finally:
        lst.close()


def _hostctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_key_issue_and_revoke_commands(exported, tmp_path: Path) -> None:
    bundle = exported("smallcnn", 3, lr=3e-3)
    out = tmp_path / "keys" / "b1.key"
    done = _hostctl("key", "issue", "--bundle", str(bundle), "--edge-id", "b1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert read_key_file(out) == board_key(load_bundle(bundle).key(), "b1")
    assert out.stat().st_mode & 0o077 == 0  # readable by its owner only
    bad = _hostctl("key", "issue", "--bundle", str(bundle), "--edge-id", "lab/pi")
    assert bad.returncode == 2 and "not a valid id" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    state = tmp_path / "state"
    done = _hostctl("key", "revoke", "--state-dir", str(state), "--edge-id", "b1")
    assert done.returncode == 0 and "revoked" in done.stderr  # the console is stderr
    assert list(read_revoked(state)) == ["b1"]
    again = _hostctl("key", "revoke", "--state-dir", str(state), "--edge-id", "b1")
    assert again.returncode == 0 and "already revoked" in again.stderr


def test_serve_with_board_keys_trains_an_issued_board_only(exported, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
    from e2e_harness import edge_cmd, run_edge, start_cloud  # the e2e suite's harness

    bundle = exported("smallcnn", 3, lr=3e-3)
    key = tmp_path / "board0.key"
    assert _hostctl("key", "issue", "--bundle", str(bundle), "--edge-id", "board0",
                    "--out", str(key)).returncode == 0  # fmt: skip
    cloud = start_cloud(bundle, tmp_path, "--board-keys")
    run = ["--data", "synthetic:400", "--epochs", "1", "--batch-size", "32"]
    refused = subprocess.run(  # the bundle's own key: refused in per-board mode
        edge_cmd(bundle, cloud.url, tmp_path, *run, tag="thief"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and "authentication failed" in refused.stderr
    record = run_edge(bundle, cloud.url, tmp_path, *run, "--key-file", str(key))
    assert record["batches_sent"] > 0
    report = cloud.finish()
    assert report["batches_trained_cloud"] == record["batches_sent"]
    assert report["refusals"]["by_reason"] == {"auth": 1}
    assert "key mode: per-board keys" in cloud.log.read_text()
    json.dumps(report)
