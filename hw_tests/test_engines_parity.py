"""On the board: the ort engine against the torch engine, same front, same batches, 5 steps.

Each engine runs `python -m edge_runtime.engines.parity` in its own process on the board (the
deployed release's Python), so the ort process never loads torch and each peak RSS is its own
(under qemu-user: the emulator's process, guest and translator together). The results come
back here and are held to the tolerances of the x86_64 suite (edge_runtime/engines/parity.py).
Skipped where the board lacks one of the engines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.engines.parity import compare
from host.deploy.access import BoardAccess
from host.deploy.board import Board
from host.hil.report import HilReport

ENGINES = ("ort", "torch")


@pytest.mark.timeout(3600)
def test_ort_and_torch_agree_on_the_board(
    board: Board, board_access: BoardAccess, deployed, hil_report: HilReport, tmp_path: Path
) -> None:
    python = f"{deployed.work}/current/venv/bin/python"
    edge = f"{deployed.work}/current/edge"
    runs = {}
    for engine in ENGINES:
        remote = f"{deployed.work}/parity-{engine}.npz"
        result = board_access.run(
            [python, "-m", "edge_runtime.engines.parity", "--bundle", edge, "--engine", engine,
             "--out", remote],
            check=False, timeout=1800,
        )  # fmt: skip
        if result.returncode != 0:
            error = (result.stderr.strip().splitlines() or ["no output"])[-1]
            if "not installed" in error or "No module named" in error:
                pytest.skip(f"board {board.name} has no {engine} engine: {error}")
            pytest.fail(f"{engine} parity probe on {board.name} failed: {error}")
        local = tmp_path / f"{engine}.npz"
        board_access.get(remote, local)
        runs[engine] = dict(np.load(local))
    ort, torch = runs["ort"], runs["torch"]
    hil_report.record(
        parity_losses_ort=[round(float(v), 6) for v in ort["losses"]],
        parity_losses_torch=[round(float(v), 6) for v in torch["losses"]],
        parity_max_loss_diff=float(np.max(np.abs(ort["losses"] - torch["losses"]))),
        ort_step_s_median=float(np.median(ort["step_s"])),
        torch_step_s_median=float(np.median(torch["step_s"])),
        ort_peak_rss_mb=float(ort["peak_rss_mb"]),
        torch_peak_rss_mb=float(torch["peak_rss_mb"]),
    )
    assert str(ort["heavy_modules"]) == "[]", "the ort engine's process loaded torch or onnx"
    assert compare(ort, torch) == []
