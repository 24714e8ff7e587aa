"""State on disk is versioned, checksummed and atomic; damage is found at start, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.link.errors import SpoolError
from edge_runtime.link.spool import Spool
from edge_runtime.statefile import StateError, previous, read_state, write_state
from edge_runtime.train.loop import CHECKPOINT, PROGRESS, RunProgress
from host.cloud.edge_state import check_state_dir, state_file

KIND = dict(kind="tail-checkpoint", version=1, way_out="restore it")


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbled":
        i = len(data) - 3  # a byte of the payload, not of the header line
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :])
    elif how == "deleted":
        path.unlink()


def test_round_trip_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "s.ckpt"
    write_state(path, b"one", **{k: v for k, v in KIND.items() if k != "way_out"})
    write_state(path, b"two", **{k: v for k, v in KIND.items() if k != "way_out"})
    assert read_state(path, **KIND) == b"two"
    assert read_state(previous(path), **KIND) == b"one"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("how", ["truncated", "empty", "garbled", "deleted"])
def test_damaged_state_is_named_with_the_way_out(tmp_path: Path, how: str) -> None:
    path = tmp_path / "s.ckpt"
    write_state(path, os.urandom(4096), kind="tail-checkpoint", version=1)
    _damage(path, how)
    with pytest.raises(StateError) as err:
        read_state(path, **KIND)
    line = str(err.value)
    assert "\n" not in line and str(path) in line and line.endswith("restore it")
    assert {"truncated": "truncated", "empty": "empty", "garbled": "damaged", "deleted": "missing"}[
        how
    ] in line


def test_foreign_kind_and_newer_version_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_state(path, b"{}", kind="edge-progress", version=1)
    with pytest.raises(StateError, match="holds edge-progress, not tail-checkpoint"):
        read_state(path, **KIND)
    write_state(path, b"{}", kind="tail-checkpoint", version=2)
    with pytest.raises(StateError, match="format v2, this build reads v1"):
        read_state(path, **KIND)


def test_host_refuses_to_start_on_a_damaged_tail_checkpoint(tmp_path: Path) -> None:
    good = state_file(tmp_path, "board0", "r1")
    write_state(good, b"x" * 100, kind="tail-checkpoint", version=1)
    assert check_state_dir(tmp_path) == 1
    bad = state_file(tmp_path, "board1", "r1")
    write_state(bad, b"y" * 100, kind="tail-checkpoint", version=1)
    _damage(bad, "garbled")
    with pytest.raises(StateError, match="board1"):
        check_state_dir(tmp_path)


def test_edge_ids_map_to_files_injectively(tmp_path: Path) -> None:
    pairs = [
        ("a--b", "c"),
        ("a", "b--c"),
        ("lab/pi", "r"),
        ("lab_pi", "r"),
        ("a+b", "c"),
        ("a", "b+c"),
    ]
    files = {state_file(tmp_path, e, r) for e, r in pairs}
    assert len(files) == len(pairs)
    assert all(f.parent == tmp_path for f in files)  # no id escapes the state directory


@pytest.mark.parametrize("how", ["not json", "missing key", "garbled"])
def test_damaged_progress_is_a_state_error(tmp_path: Path, how: str) -> None:
    RunProgress("r1", 1, 0, engine_sha256="0" * 64).save(tmp_path)
    path = tmp_path / PROGRESS
    if how == "garbled":
        _damage(path, how)
    else:
        body = b"not json {" if how == "not json" else json.dumps({"run_id": "r1"}).encode()
        write_state(path, body, kind="edge-progress", version=1)
    with pytest.raises(StateError, match="--fresh"):
        RunProgress.load(tmp_path)


def test_engine_checkpoint_must_be_the_recorded_one(tmp_path: Path) -> None:
    from edge_runtime.bundle import sha256_file

    ckpt = tmp_path / CHECKPOINT
    ckpt.write_bytes(os.urandom(2048))
    progress = RunProgress("r1", 1, 0, engine_sha256=sha256_file(ckpt))
    assert progress.check_engine_checkpoint(tmp_path) == ckpt
    _damage(ckpt, "garbled")
    with pytest.raises(StateError, match="engine checkpoint is damaged"):
        progress.check_engine_checkpoint(tmp_path)
    ckpt.unlink()
    with pytest.raises(StateError, match="engine checkpoint is missing"):
        progress.check_engine_checkpoint(tmp_path)
    # Killed before the first checkpoint: the bundle's initial front is the state to resume.
    assert RunProgress("r1").check_engine_checkpoint(tmp_path) is None


@pytest.mark.parametrize("how", ["empty", "truncated", "garbled"])
def test_damaged_spool_entry_is_found_when_the_spool_opens(tmp_path: Path, how: str) -> None:
    spool = Spool(tmp_path, 16, 1 << 20, fsync=False)
    spool.append(3, os.urandom(1000))
    entry = next(tmp_path.glob("*.msg"))
    _damage(entry, how)
    with pytest.raises(SpoolError, match=f"{entry.name}.*--fresh"):
        Spool(tmp_path, 16, 1 << 20, fsync=False)


def test_edge_cli_names_a_damaged_progress_file(tmp_path: Path, exported) -> None:
    bundle = exported("smallcnn", 3, lr=3e-3)
    work = tmp_path / "work"
    RunProgress("r1", 1, 3, engine_sha256="0" * 64).save(work)
    _damage(work / PROGRESS, "garbled")
    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge"),
         "--connect", "socket://127.0.0.1:9", "--work-dir", str(work), "--resume"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "progress.json" in lines[0] and "damaged" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_host_refuses_to_start_when_the_tail_cannot_be_built(tmp_path: Path, exported) -> None:
    import shutil

    import numpy as np

    from edge_runtime.bundle import BundleError, load_bundle
    from host.cloud.server import CloudServer

    root = tmp_path / "bundle"
    shutil.copytree(exported("smallcnn", 3, lr=3e-3), root)
    np.savez(root / "cloud" / "tail_weights.npz", not_a_layer=np.zeros(3))  # weights of nothing
    bundle = load_bundle(root, verify=False)  # past the hashes: the build is what must refuse
    with pytest.raises(BundleError, match="the tail cannot be built"):
        CloudServer(bundle, tmp_path / "state", key=b"k" * 32)


@pytest.mark.parametrize("shared", [False, True])
def test_host_refuses_a_tail_checkpoint_of_another_export(exported, tmp_path, shared) -> None:
    """A state dir written for split 2, served with a bundle re-exported at split 3: one line
    naming the file when serving starts (each edge's connection thread died on torch's
    load_state_dict error, and the edge retried until --connect-timeout)."""
    from edge_runtime.bundle import load_bundle
    from host.cloud.edge_state import EdgeState, SharedTail
    from host.cloud.server import CloudServer

    split2 = load_bundle(exported("smallcnn", 2, input_shape=(1, 8, 8)))
    split3 = load_bundle(exported("smallcnn", 3, input_shape=(1, 8, 8)))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    if shared:
        tail = SharedTail(split2, state_dir)
        EdgeState.open(split2, state_dir, "board0", "r1", shared=tail).checkpoint()
    else:
        EdgeState.open(split2, state_dir, "board0", "r1").checkpoint()
    CloudServer(split2, state_dir, key=b"k" * 32, shared_tail=shared).stop()  # its own: fine
    with pytest.raises(StateError, match="holds the tail of another model or split") as err:
        CloudServer(split3, state_dir, key=b"k" * 32, shared_tail=shared)
    assert "\n" not in str(err.value) and str(state_dir) in str(err.value)
