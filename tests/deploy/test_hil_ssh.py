"""The HIL suite against a board reached over SSH, as a real Pi would be: a real OpenSSH server
on 127.0.0.1 stands in for the board (this machine's Python as its interpreter, our wheel
deployed into a throwaway work directory), the edge connects back to the host over TCP as the
board file's [link] url says. Every step goes through ssh and scp: deploy, the training run,
fetching its reports and the board's own model out, copying the model for inference."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import ssh_connection, write_board

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hil_suite_on_a_board_over_ssh(sshd, tmp_path: Path) -> None:
    board = write_board(
        tmp_path / "ssh-board.toml", tmp_path / "board", ssh_connection(sshd), name="pi-ssh"
    )
    text = board.read_text().replace(
        "socket://127.0.0.1:5555", f"socket://127.0.0.1:{_free_port()}"
    )
    board.write_text(text)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "hw_tests", "-q", "-p", "no:cacheprovider"]
        + ["--board", str(board), "--out", str(out), "--skip-deps"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads((out / "hil-report.json").read_text())
    assert report["board"]["name"] == "pi-ssh"
    assert report["passed"] is True and report["counts"]["failed"] == 0
    outcomes = {t["name"]: t["outcome"] for t in report["tests"]}
    for name in (
        "test_reachable",
        "test_deploy",
        "test_hierarchical_run",
        "test_model_out_on_board",
        "test_early_exit_inference_on_board",
    ):
        assert outcomes.get(name) == "passed", (name, outcomes)
    f = report["figures"]
    assert f["batches_trained_cloud"] == f["batches_sent"] > 0
    assert f["board_vs_host_edge_max_diff"] < 1e-3
    assert f["infer_samples"] > 0
    # The suite's release went where the board file says, through ssh.
    assert (tmp_path / "board" / "current" / "venv" / "bin" / "edge-runtime").exists()
