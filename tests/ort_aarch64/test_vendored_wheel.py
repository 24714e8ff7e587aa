"""The vendored onnxruntime-training wheel for aarch64 boards is the one its record names.

vendor/onnxruntime-aarch64/ holds the wheel that tools/ort-aarch64/build.sh cross-builds
(hours; docs/boards.md) and SHA256SUMS, its record. CI checks what a board would install:
the bytes match the record, and the wheel says linux aarch64 / CPython 3.11 in its name, in
its WHEEL metadata and in the machine field of its extension module. The checker
(host/deploy/vendor.py, the one `hostctl bundle` uses) is tested on wheels made here, so it is exercised even before a wheel is vendored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from host.deploy.board import load_board
from host.deploy.errors import BoardError
from host.deploy.offline import engine_requirements
from host.deploy.vendor import EXTENSION, VENDORED, vendored_wheel, wheel_problems

REPO = Path(__file__).resolve().parents[2]
VENDOR = VENDORED[("ort", "aarch64", "3.11")]
EM_AARCH64 = 183  # ELF e_machine of arm64


def make_wheel(tmp: Path, platform: str, machine: int) -> tuple[Path, Path]:
    """A small wheel with the given platform tag and extension machine, and its record."""
    wheel = tmp / f"onnxruntime_training-1.21.0+cpu-cp311-cp311-{platform}.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(
            "onnxruntime_training-1.21.0+cpu.dist-info/WHEEL",
            f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-{platform}\n",
        )
        elf = b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little")
        z.writestr(EXTENSION, elf + bytes(44))
    record = tmp / "SHA256SUMS"
    record.write_text(f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {wheel.name}\n")
    return wheel, record


def test_checker_accepts_an_aarch64_cp311_wheel(tmp_path: Path) -> None:
    wheel, record = make_wheel(tmp_path, "linux_aarch64", EM_AARCH64)
    assert wheel_problems(wheel, record) == []


def test_checker_rejects_x86_64_and_a_changed_wheel(tmp_path: Path) -> None:
    wheel, record = make_wheel(tmp_path, "linux_x86_64", 62)
    problems = wheel_problems(wheel, record)
    assert any("platform linux_x86_64" in p for p in problems)
    assert any("WHEEL tags" in p for p in problems)
    assert any("e_machine 62" in p for p in problems)
    wheel, record = make_wheel(tmp_path, "linux_aarch64", EM_AARCH64)
    with zipfile.ZipFile(wheel, "a") as z:
        z.writestr("extra.txt", "changed after the record")
    assert any(p.startswith("sha256") for p in wheel_problems(wheel, record))


def test_vendored_wheel_matches_its_record_and_is_aarch64_cp311() -> None:
    wheels = sorted(VENDOR.glob("*.whl"))
    if not wheels:
        pytest.skip("no vendored wheel yet: see docs/boards.md")
    assert len(wheels) == 1, f"one wheel expected in {VENDOR}, found {[w.name for w in wheels]}"
    assert wheel_problems(wheels[0], VENDOR / "SHA256SUMS") == []


def test_bundle_refuses_a_vendored_wheel_that_differs_from_its_record(tmp_path: Path) -> None:
    """`hostctl bundle` for an aarch64 ort board checks the vendored wheel before it ships."""
    wheel, record = make_wheel(tmp_path, "linux_aarch64", EM_AARCH64)
    board = dataclasses.replace(
        load_board(REPO / "hw_tests" / "boards" / "qemu-aarch64.toml"), engine="ort"
    )
    folder = tmp_path / "vendor"
    folder.mkdir()
    VENDORED[("ort", "aarch64", "3.11")] = folder
    try:
        assert vendored_wheel(board) is None  # nothing vendored: the caller says what to do
        (folder / wheel.name).write_bytes(wheel.read_bytes())
        (folder / "SHA256SUMS").write_text(record.read_text())
        assert vendored_wheel(board) == folder / wheel.name
        # The bundle pins the vendored wheel's version, which pip finds among the bundle's wheels.
        assert engine_requirements(board) == ("edge", ["onnxruntime-training==1.21.0+cpu"])
        assert dataclasses.replace(board, engine="auto").resolved_engine == "ort"
        with zipfile.ZipFile(folder / wheel.name, "a") as z:
            z.writestr("extra.txt", "changed after the record")
        with pytest.raises(BoardError, match="not the recorded one: sha256"):
            vendored_wheel(board)
    finally:
        VENDORED[("ort", "aarch64", "3.11")] = VENDOR
