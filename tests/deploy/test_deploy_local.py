"""Deploy to a local board (this machine): the shipped virtual board, and failures mid-way."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from host.deploy import DeployError, deploy, load_board, make_deploy_bundle
from host.deploy.access import LocalAccess, open_access

REPO = Path(__file__).resolve().parents[2]
VIRTUAL = REPO / "hw_tests" / "boards" / "virtual.toml"


def test_virtual_board_deploys_a_real_export(exported, hiertrain_wheel, tmp_path) -> None:
    board = dataclasses.replace(load_board(VIRTUAL), work_dir=str(tmp_path / "board"))
    assert isinstance(open_access(board), LocalAccess)
    bundle_dir = exported("smallcnn", 2)
    made = make_deploy_bundle(
        board, bundle_dir, tmp_path / "deploy", skip_deps=True, wheel=hiertrain_wheel
    )
    assert made.manifest["engine"] == "ort" and made.manifest["extra"] == "edge"
    assert "edge/training_model.onnx" in made.files

    result = deploy(board, tmp_path / "deploy")
    assert result.installed and result.switched and result.up_to_date == []
    current = tmp_path / "board" / "current"
    assert os.readlink(current) == f"releases/{made.release}"
    # The board's edge runtime loads the deployed bundle (sha256 verified) with the ort engine.
    probe = (
        "from edge_runtime.bundle import load_bundle; from edge_runtime.engines import make_engine;"
        f"e = make_engine('ort', load_bundle('{current}/edge')); print(e.name)"
    )
    out = subprocess.run(
        [current / "venv/bin/python", "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ort", out.stderr


def test_failed_install_names_the_step_and_keeps_current(
    local_board_file, deploy_bundle, tmp_path
) -> None:
    board = load_board(local_board_file)
    first = deploy_bundle(board, "d1")
    deploy(board, tmp_path / "d1")
    deploy_bundle(board, "d2", checkpoint=b"newer")

    broken = dataclasses.replace(board, interpreter=str(tmp_path / "no-such-python3"))
    with pytest.raises(DeployError) as caught:
        deploy(broken, tmp_path / "d2")
    assert caught.value.step == "install" and caught.value.current == first.release
    assert "no-such-python3" in str(caught.value)
    current = tmp_path / "board" / "current"
    assert os.readlink(current) == f"releases/{first.release}"
    edge = subprocess.run([current / "venv/bin/edge-runtime", "--help"], capture_output=True)
    assert edge.returncode == 0  # the previous release still runs


def test_check_step_catches_a_missing_engine(local_board_file, deploy_bundle, tmp_path) -> None:
    """A --skip-deps deploy onto a Python without the engine fails at check, before the switch."""
    board = dataclasses.replace(load_board(local_board_file), engine="torch")
    deploy_bundle(board, "d1")
    hide_torch = tmp_path / "hide"
    hide_torch.mkdir()
    (hide_torch / "torch.py").write_text("raise ImportError('torch is not on this board')\n")
    access = LocalAccess()
    access.env["PYTHONPATH"] = str(hide_torch)
    with pytest.raises(DeployError) as caught:
        deploy(board, tmp_path / "d1", access=access)
    assert caught.value.step == "check" and "torch is not on this board" in str(caught.value)
    assert not (tmp_path / "board" / "current").exists()
