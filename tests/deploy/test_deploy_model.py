"""`hostctl deploy --model`: a trained model onto a board for early-exit inference, through
the board's real access (a local board here; tests/deploy/test_hil_ssh.py does it over ssh)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import write_board

from host.deploy.access import BoardAccess, open_access
from host.deploy.board import load_board
from host.deploy.errors import BoardError, DeployError
from host.deploy.model import BOARD_MODEL_FILES, deploy_model

HOSTCTL = [sys.executable, "-m", "host.cli"]


@pytest.fixture(scope="module")
def model_dir(exported, tmp_path_factory) -> Path:
    """A model directory from a short real run (smallcnn on 8x8 synthetic images)."""
    from host.model.in_process import train_in_process

    bundle = exported("smallcnn", 2, input_shape=(3, 8, 8))
    work = tmp_path_factory.mktemp("model-run")
    return train_in_process(bundle, "synthetic:160:8", work, epochs=1, timeout_s=300).model_dir


class Corrupting(BoardAccess):
    """The real access, flipping a byte of one file after it lands on the board."""

    def __init__(self, inner: BoardAccess, corrupt: str) -> None:
        self.inner, self.corrupt = inner, corrupt

    def _run(self, command, timeout):
        return self.inner._run(command, timeout)

    def put(self, local: Path, remote: str) -> None:
        self.inner.put(local, remote)
        if remote.endswith("/" + self.corrupt):
            self.inner.run(f"printf 'Z' | dd of={remote} bs=1 seek=7 conv=notrunc 2>/dev/null")

    def get(self, remote: str, local: Path) -> None:
        self.inner.get(remote, local)


def test_model_goes_to_the_board_and_a_corrupted_upload_keeps_the_old(model_dir, tmp_path) -> None:
    board = load_board(write_board(tmp_path / "b.toml", tmp_path / "board", 'kind = "local"'))
    first = deploy_model(board, model_dir, name="digits")
    there = tmp_path / "board" / "models" / "digits"
    assert first.remote_dir == str(there)
    assert sorted(p.name for p in there.iterdir()) == sorted(BOARD_MODEL_FILES)
    for name in BOARD_MODEL_FILES:
        assert (there / name).read_bytes() == (model_dir / name).read_bytes()
    assert first.bytes_sent == sum((model_dir / f).stat().st_size for f in BOARD_MODEL_FILES)

    # The board answers from what was deployed (model.pt, full.onnx, tail.onnx stayed here).
    from edge_runtime.infer.runner import EdgeModel

    EdgeModel(there)

    before = (there / "edge.onnx").read_bytes()
    with open_access(board) as inner, pytest.raises(DeployError) as caught:
        deploy_model(board, model_dir, name="digits", access=Corrupting(inner, "edge.onnx"))
    assert "step 'verify' failed" in str(caught.value) and "edge.onnx" in str(caught.value)
    assert (there / "edge.onnx").read_bytes() == before  # the old model is untouched
    assert not [p for p in there.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_not_a_model_dir_and_bad_names(model_dir, tmp_path) -> None:
    board = load_board(write_board(tmp_path / "b.toml", tmp_path / "board", 'kind = "local"'))
    with pytest.raises(DeployError, match="step 'check' failed: .*no model.json"):
        deploy_model(board, tmp_path, name="x")
    with pytest.raises(BoardError, match="model name '../x'"):
        deploy_model(board, model_dir, name="../x")
    assert not (tmp_path / "board" / "models").exists()


def test_cli_deploy_model_and_its_usage_errors(model_dir, tmp_path) -> None:
    board = write_board(tmp_path / "b.toml", tmp_path / "board", 'kind = "local"')

    def hostctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HOSTCTL, *args], capture_output=True, text=True, timeout=120)

    done = hostctl("deploy", "--board", str(board), "--model", str(model_dir))
    assert done.returncode == 0, done.stderr
    assert (
        f"models/{model_dir.name} (3 files" in done.stderr and "edge-runtime infer" in done.stderr
    )
    for args, needle in (
        ([], "exactly one of --bundle"),
        (["--model", str(model_dir), "--bundle", str(tmp_path)], "exactly one of --bundle"),
        (["--model", str(model_dir), "--systemd"], "--systemd goes with --bundle"),
        (["--bundle", str(tmp_path), "--name", "x"], "--name goes with --model"),
    ):
        bad = hostctl("deploy", "--board", str(board), *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert needle in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    # A board that takes files only (a UART and its agent) has no shell to check and swap with.
    key = tmp_path / "board.key"
    key.write_text("00" * 32 + "\n")
    serial = write_board(
        tmp_path / "s.toml",
        tmp_path / "sboard",
        f'kind = "serial"\ndevice = "/dev/ttyNOPE"\nkey_file = "{key}"',
    )
    bad = hostctl("deploy", "--board", str(serial), "--model", str(model_dir))
    assert bad.returncode == 2 and "--model needs a shell on the board" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
