"""Front averaging with real processes: `hostctl serve --shared-tail --average-fronts-every`,
two `edge-runtime run` boards (ORT engine) over TCP, and the one averaged model out.

The round timeout is the test's only clock, and it must never fire: a round closed by it holds
one board only, and the fleet's versions no longer line up (a board that missed round 1 adopts
it late, then sends round 2 while the other sends its last, round 2, and ends alone on round
3). Under heavy load one board took longer than the 120 s it had to join and train its first
epoch, and the run ended on version 3 where 2 was expected. Rounds close as soon as both boards
are in, so a timeout far above any stall costs nothing."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import torch
from e2e_harness import ENV, edge_cmd, start_cloud

ROUND_TIMEOUT_S = 3600


def test_two_boards_average_their_fronts_and_one_model_comes_out(exported, tmp_path) -> None:
    bundle = exported("smallcnn", 2)
    model_dir = tmp_path / "model"
    cloud = start_cloud(
        bundle,
        tmp_path,
        "--shared-tail",
        "--average-fronts-every",
        "1epochs",
        "--round-timeout",
        str(ROUND_TIMEOUT_S),
        "--expect-edges",  # board0 may connect after board1 has trained its first epoch
        "2",
        "--model-out",
        str(model_dir),
    )
    procs = {}
    for k in range(2):
        work = tmp_path / f"board{k}"
        work.mkdir()
        cmd = edge_cmd(
            bundle,
            cloud.url,
            work,
            "--data",
            "synthetic:120",
            "--epochs",
            "2",
            "--engine",
            "ort",
            "--edge-id",
            f"board{k}",  # the last --edge-id wins
        )
        procs[k] = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=work
        )
    for proc in procs.values():
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-3000:]
    host = cloud.finish(timeout=600)
    edges = {k: json.loads((tmp_path / f"board{k}" / "edge.json").read_text()) for k in procs}

    averaging = host["shared_tail"]["front_averaging"]
    assert averaging["schedule"] == "every 1 epochs" and averaging["version"] == 2
    assert averaging["round_timeout_s"] == ROUND_TIMEOUT_S
    assert [sorted(r["samples"]) for r in averaging["rounds"]] == [["board0", "board1"]] * 2
    assert [r["closed_by"] for r in averaging["rounds"]] == ["all", "all"]
    for edge in edges.values():
        assert edge["front_averaging"]["adopted"] == [1, 2]
        assert edge["front_averaging"]["bytes_up"] > 0
        assert edge["front_averaging"]["bytes_down"] == edge["front_averaging"]["bytes_up"]
    assert averaging["bytes_down"] == sum(
        e["front_averaging"]["bytes_down"] for e in edges.values()
    )
    # One model, not one per board: the averaged front on the shared tail.
    assert (model_dir / "full.onnx").is_file() and not (model_dir / "board0").exists()
    saved = torch.load(model_dir / "model.pt", weights_only=True)
    assert all(np.isfinite(v.numpy()).all() for v in saved["edge"].values())
    said = cloud.proc.stdout.read() + cloud.log.read_text()  # the console writes to stderr
    assert "front averaging (every 1 epochs): version 2" in said
