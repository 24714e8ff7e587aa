"""A full disk on either side: one line naming the path and the space, nothing half-written, and
the run resumes exactly once when space returns. Real tmpfs mounts: root only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from e2e_harness import ENV, edge_cmd, expected_ids, run_edge, start_cloud

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounts a small tmpfs to fill the disk: needs root"
)

RUN = ["--data", "synthetic:2400", "--epochs", "1", "--batch-size", "32"]
TRAIN, BATCH, EPOCHS = 1920, 32, 1


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    try:
        _mount(disk, "256k")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_edge_disk_full_stops_in_one_line_and_resumes_exactly_once(
    small_bundle, tmp_path, small_disk
) -> None:
    cloud = start_cloud(small_bundle, tmp_path)
    work = ["--work-dir", str(small_disk / "edge-work")]
    out = subprocess.run(
        edge_cmd(small_bundle, cloud.url, tmp_path, *RUN, *work),
        capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "disk full" in last and str(small_disk) in last and "bytes" in last, out.stderr
    assert "Traceback" not in out.stderr
    assert not list(small_disk.rglob("*.tmp"))  # nothing half-written
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    run_edge(small_bundle, cloud.url, tmp_path, *RUN, *work, "--resume")
    record = cloud.finish()["edges"][0]
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)


def test_host_disk_full_stops_both_sides_in_one_line(small_bundle, tmp_path, small_disk) -> None:
    cloud = start_cloud(
        small_bundle, tmp_path, "--state-dir", str(small_disk / "state"), "--checkpoint-every", "5"
    )
    out = subprocess.run(
        edge_cmd(small_bundle, cloud.url, tmp_path, *RUN),
        capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    rc = cloud.proc.wait(120)
    log = cloud.log.read_text()
    assert rc == 1, log
    assert "disk full" in log.strip().splitlines()[-1] and "Traceback" not in log
    assert out.returncode == 1 and "disk full" in out.stderr, out.stderr
    assert not list(small_disk.rglob("*.tmp"))


def test_model_out_on_a_full_disk_is_one_line(small_bundle, tmp_path, small_disk) -> None:
    """--model-out on a disk too small for the model: the run's report stands, then one line
    naming the file, the bytes and the way out ("failed: [Errno 28] No space left on device"
    named neither), and no half-written .tmp file is left there."""
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--bundle", str(small_bundle), "--data",
         "synthetic:160", "--epochs", "1", "--link", "local", "--link-emulation", "user",
         "--work-dir", str(tmp_path / "demo"), "--model-out", str(small_disk / "model")],
        capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hostctl: failed: {small_disk / 'model'}/"), last
    assert "disk full writing the model" in last and "--model-out" in last, last
    assert not list((small_disk / "model").glob("*.tmp"))


@pytest.mark.parametrize("engine", ["ort", "torch"])
def test_edge_model_out_on_a_full_disk_is_one_line(
    small_bundle, tmp_path, small_disk, engine
) -> None:
    """edge-runtime run --model-out on a full disk: one line saying so and the way out, no
    edge.onnx.tmp left (the ort engine said "Protobuf serialization failed")."""
    import shutil
    import subprocess as sp

    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * max(0, free - 4096))
    cloud = start_cloud(small_bundle, tmp_path)
    try:
        cmd = edge_cmd(small_bundle, cloud.url, tmp_path, "--data", "synthetic:160", "--epochs",
                       "1", "--engine", engine, "--model-out", str(small_disk / "m"))  # fmt: skip
        out = sp.run(cmd, capture_output=True, text=True, timeout=240, env=ENV)
    finally:
        cloud.proc.kill()
        cloud.proc.wait()
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edge-runtime: failed: {small_disk / 'm' / 'edge.onnx'}: "), last
    assert "disk full writing the edge model" in last and "--model-out" in last, last
    assert not list((small_disk / "m").glob("*.tmp"))
