"""hostctl bundle: the offline deploy bundle, its manifest, and its refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import EDGE_FILES

from edge_runtime.bundle import sha256_file
from host.deploy import BoardError, deploy, load_board, load_deploy_bundle, make_deploy_bundle
from host.deploy.offline import DEPLOY_MANIFEST, WHEEL_SOURCES, build_wheel

REPO = Path(__file__).resolve().parents[2]
HOSTCTL = [sys.executable, "-m", "host.cli"]


def test_skip_deps_bundle_holds_edge_and_wheel_with_hashes(
    local_board_file, edge_bundle, hiertrain_wheel, tmp_path
) -> None:
    board = load_board(local_board_file)
    out = tmp_path / "deploy"
    made = make_deploy_bundle(board, edge_bundle(), out, skip_deps=True, wheel=hiertrain_wheel)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted([*made.files, DEPLOY_MANIFEST])
    assert {f"edge/{n}" for n in EDGE_FILES} < set(made.files)
    assert all(sha256_file(out / name) == sha for name, sha in made.files.items())
    m = made.manifest
    assert m["skip_deps"] and m["requirements"] == [] and m["engine"] == "ort"
    assert m["board"] == {"name": "test-board", "arch": board.arch, "python": board.python}
    assert m["wheel"] == f"wheels/{hiertrain_wheel.name}"

    # The same inputs give the same release id; the edge half on its own is accepted too.
    again = make_deploy_bundle(
        board, edge_bundle() / "edge", out, skip_deps=True, wheel=hiertrain_wheel
    )
    assert again.release == made.release
    assert load_deploy_bundle(out).release == made.release


def test_wheel_is_reproducible(tmp_path) -> None:
    # From a snapshot: the working tree may change while the suite runs.
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in WHEEL_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copyfile(REPO / name, src / name)
    a = build_wheel(tmp_path / "a", source=src)
    b = build_wheel(tmp_path / "b", source=src)
    assert a.name == "hiertrain-0.1.0-py3-none-any.whl"
    assert a.read_bytes() == b.read_bytes()


def test_refusals(local_board_file, edge_bundle, hiertrain_wheel, tmp_path) -> None:
    board = load_board(local_board_file)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(BoardError, match="not a deploy bundle"):
        make_deploy_bundle(board, edge_bundle(), busy, skip_deps=True, wheel=hiertrain_wheel)
    assert (busy / "notes.txt").read_text() == "mine"

    src = edge_bundle()
    shutil.copytree(src / "edge", tmp_path / "cloud")
    with pytest.raises(BoardError, match="edge/ half"):
        make_deploy_bundle(board, tmp_path / "cloud", tmp_path / "d", skip_deps=True)

    out = tmp_path / "ok"
    make_deploy_bundle(board, src, out, skip_deps=True, wheel=hiertrain_wheel)
    (out / "edge" / "checkpoint").write_bytes(b"tampered")
    with pytest.raises(BoardError, match="edge/checkpoint differs"):
        load_deploy_bundle(out)

    other = tmp_path / "other"
    make_deploy_bundle(board, src, other, skip_deps=True, wheel=hiertrain_wheel)
    aarch64 = dataclasses.replace(board, arch="aarch64")
    with pytest.raises(BoardError, match="was made for x86_64"):
        deploy(aarch64, other)


def test_hostctl_usage_errors_exit_2_with_one_line(local_board_file, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(local_board_file.read_text().replace('arch = "x86_64"', 'arch = "mips"'))
    not_deploy = tmp_path / "empty"
    not_deploy.mkdir()
    cases = [
        (["bundle", "--board", str(bad), "--bundle", str(tmp_path)], "arch: 'mips' is not valid"),
        (
            ["deploy", "--board", str(local_board_file), "--bundle", str(not_deploy)],
            "hostctl bundle",
        ),
    ]
    for args, expected in cases:
        out = subprocess.run([*HOSTCTL, *args], capture_output=True, text=True, timeout=60)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and expected in lines[0], out.stderr


@pytest.mark.skipif(
    os.environ.get("HIERTRAIN_TEST_PIP_DOWNLOAD") != "1",
    reason="downloads ~340 MB of wheels (onnxruntime-training and its dependencies); "
    "set HIERTRAIN_TEST_PIP_DOWNLOAD=1 to run",
)
def test_full_bundle_downloads_and_installs_offline(
    local_board_file, edge_bundle, hiertrain_wheel, tmp_path
) -> None:
    board = load_board(local_board_file)
    made = make_deploy_bundle(board, edge_bundle(), tmp_path / "d", wheel=hiertrain_wheel)
    names = " ".join(made.files)
    assert "numpy-" in names and "onnxruntime_training-1.19.2" in names and "cobs-" in names
    result = deploy(board, tmp_path / "d")
    pyvenv = (Path(result.release_dir) / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in pyvenv
    assert json.loads((tmp_path / "d" / DEPLOY_MANIFEST).read_text())["skip_deps"] is False


def test_model_requirements_are_downloaded_for_the_board(
    local_board_file, edge_bundle, hiertrain_wheel, tmp_path, monkeypatch
) -> None:
    """`hostctl export --requires` lands in the manifest; `hostctl bundle` hands it to pip with
    the board's platform, and the wheel (with its own dependency) is in the deploy bundle.
    Offline: pip downloads from a local index of small wheels standing in for the real ones."""
    from deploy_support import write_wheel

    index = tmp_path / "index"
    index.mkdir()
    for name, version in [("numpy", "1.26.0"), ("pyserial", "3.5"), ("cobs", "1.2.1")]:
        write_wheel(index, name, version, [])
    write_wheel(index, "click", "8.1.7", [])
    write_wheel(index, "rich", "13.7.0", [])
    write_wheel(index, "torch", "2.8.0", [])
    write_wheel(index, "zstandard", "0.25.0", [])
    write_wheel(index, "timm", "1.0.9", ["safetensors"])
    write_wheel(index, "safetensors", "0.4.5", [])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))

    src = edge_bundle()
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["code"] = {"dir": "code", "files": [], "requires": ["timm==1.0.9"]}
    raw = json.dumps(manifest, indent=2).encode()
    for path in (src / "manifest.json", src / "edge" / "manifest.json"):
        path.write_bytes(raw)

    board = dataclasses.replace(load_board(local_board_file), arch="aarch64", engine="torch")
    lines: list[str] = []
    made = make_deploy_bundle(
        board, src, tmp_path / "d", wheel=hiertrain_wheel, on_progress=lines.append
    )
    assert "timm==1.0.9" in made.manifest["requirements"]
    names = " ".join(made.files)
    assert "wheels/timm-1.0.9-py3-none-any.whl" in names
    assert "wheels/safetensors-0.4.5-py3-none-any.whl" in names  # timm's own dependency
    assert "wheels/torch-2.8.0-py3-none-any.whl" in names  # the aarch64 torch pin
    # The extra's own requirements, read from our wheel's metadata (they once went missing, and
    # the board's offline install failed on zstandard).
    assert "wheels/zstandard-0.25.0-py3-none-any.whl" in names


def test_a_torch_only_bundle_is_refused_for_an_ort_board(
    local_board_file, edge_bundle, hiertrain_wheel, tmp_path
) -> None:
    src = edge_bundle()
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["engines"] = ["torch"]  # hostctl export --engine torch
    raw = json.dumps(manifest, indent=2).encode()
    for path in (src / "manifest.json", src / "edge" / "manifest.json"):
        path.write_bytes(raw)
    board = load_board(local_board_file)  # engine = "ort"
    with pytest.raises(BoardError, match='exported for torch only; set engine = "torch"'):
        make_deploy_bundle(board, src, tmp_path / "d", skip_deps=True, wheel=hiertrain_wheel)
    assert not (tmp_path / "d").exists()
