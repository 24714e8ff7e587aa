"""The vendored onnxruntime-training wheel for aarch64 boards is the one its record names.

vendor/onnxruntime-aarch64/ holds the wheel that tools/ort-aarch64/build.sh cross-builds
(hours; docs/boards.md) and SHA256SUMS, its record. CI checks what a board would install:
the bytes match the record, and the wheel says linux aarch64 / CPython 3.11 in its name, in
its WHEEL metadata and in the machine field of its extension module. The checker itself is
tested on wheels made here, so it is exercised even before a wheel is vendored.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENDOR = REPO / "vendor" / "onnxruntime-aarch64"
EXTENSION = "onnxruntime/capi/onnxruntime_pybind11_state.so"
EM_AARCH64 = 183  # ELF e_machine of arm64


def recorded_sha256(record: Path) -> dict[str, str]:
    """`sha256sum` output -> {file name: hex digest}."""
    sums = {}
    for line in record.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[Path(name.lstrip("*")).name] = digest
    return sums


def wheel_problems(wheel: Path, record: Path) -> list[str]:
    """Everything that makes `wheel` not the recorded aarch64 / cp311 wheel; empty when it is."""
    problems = []
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    expected = recorded_sha256(record).get(wheel.name)
    if expected is None:
        problems.append(f"{record.name} has no line for {wheel.name}")
    elif expected != digest:
        problems.append(f"sha256 {digest} != recorded {expected}")
    # name-version-[build-]python-abi-platform.whl
    python_tag, abi_tag, platform_tag = wheel.stem.split("-")[-3:]
    if (python_tag, abi_tag) != ("cp311", "cp311"):
        problems.append(f"file name says {python_tag}-{abi_tag}, not cp311-cp311")
    if not platform_tag.endswith("aarch64"):
        problems.append(f"file name says platform {platform_tag}")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = [n for n in names if n.endswith(".dist-info/WHEEL")]
        if len(metadata) != 1:
            return [*problems, f"{len(metadata)} .dist-info/WHEEL files"]
        tags = [
            line.split(":", 1)[1].strip()
            for line in z.read(metadata[0]).decode().splitlines()
            if line.startswith("Tag:")
        ]
        if not tags or not all(
            t.startswith("cp311-cp311-") and t.endswith("aarch64") for t in tags
        ):
            problems.append(f"WHEEL tags {tags}")
        if EXTENSION not in names:
            return [*problems, f"no {EXTENSION}"]
        header = z.read(EXTENSION)[:20]
        # ELF, 64-bit, little-endian; e_machine is the half-word at offset 18.
        if header[:6] != b"\x7fELF\x02\x01":
            problems.append(f"{EXTENSION} is not a 64-bit little-endian ELF")
        elif int.from_bytes(header[18:20], "little") != EM_AARCH64:
            problems.append(f"{EXTENSION} e_machine {int.from_bytes(header[18:20], 'little')}")
    return problems


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
