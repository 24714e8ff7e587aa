"""Engine wheels we build where upstream publishes none, kept in the repository under vendor/.

onnxruntime-training has no aarch64 wheel on PyPI; `make ort-aarch64` cross-builds one
(tools/ort-aarch64/build.sh, hours) and `vendor/onnxruntime-aarch64/` keeps it with its record
(`SHA256SUMS`), so no user needs the build. `hostctl bundle` for such a board carries the wheel
and downloads what it requires for the board; before that, the wheel is checked: its bytes match
the record, and its name, its WHEEL tags and its extension module all say the board's platform.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from host.deploy.board import Board
from host.deploy.errors import BoardError

REPO = Path(__file__).resolve().parents[2]
RECORD = "SHA256SUMS"
EXTENSION = "onnxruntime/capi/onnxruntime_pybind11_state.so"
ELF_MACHINE = {"aarch64": 183, "x86_64": 62}  # ELF e_machine

# (engine, board arch, board Python) -> the folder of the wheel built for it
VENDORED: dict[tuple[str, str, str], Path] = {
    ("ort", "aarch64", "3.11"): REPO / "vendor" / "onnxruntime-aarch64",
}


def recorded_sha256(record: Path) -> dict[str, str]:
    """`sha256sum` output -> {file name: hex digest}."""
    sums = {}
    for line in record.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[Path(name.lstrip("*")).name] = digest
    return sums


def wheel_problems(
    wheel: Path, record: Path, arch: str = "aarch64", python: str = "3.11"
) -> list[str]:
    """Everything that makes `wheel` not the recorded wheel for `arch` / CPython `python`;
    empty when it is."""
    tag = "cp" + python.replace(".", "")
    problems = []
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    expected = recorded_sha256(record).get(wheel.name) if record.is_file() else None
    if expected is None:
        problems.append(f"{record.name} has no line for {wheel.name}")
    elif expected != digest:
        problems.append(f"sha256 {digest} != recorded {expected}")
    # name-version-[build-]python-abi-platform.whl
    python_tag, abi_tag, platform_tag = wheel.stem.split("-")[-3:]
    if (python_tag, abi_tag) != (tag, tag):
        problems.append(f"file name says {python_tag}-{abi_tag}, not {tag}-{tag}")
    if not platform_tag.endswith(arch):
        problems.append(f"file name says platform {platform_tag}")
    try:
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
                t.startswith(f"{tag}-{tag}-") and t.endswith(arch) for t in tags
            ):
                problems.append(f"WHEEL tags {tags}")
            if EXTENSION not in names:
                return [*problems, f"no {EXTENSION}"]
            header = z.read(EXTENSION)[:20]
    except zipfile.BadZipFile as exc:
        return [*problems, f"not a wheel (zip): {exc}"]
    # ELF, 64-bit, little-endian; e_machine is the half-word at offset 18.
    if header[:6] != b"\x7fELF\x02\x01":
        problems.append(f"{EXTENSION} is not a 64-bit little-endian ELF")
    elif int.from_bytes(header[18:20], "little") != ELF_MACHINE.get(arch):
        problems.append(f"{EXTENSION} e_machine {int.from_bytes(header[18:20], 'little')}")
    return problems


def vendored_wheel(board: Board) -> Path | None:
    """The checked vendored engine wheel for `board`, or None where there is none.

    BoardError when the folder holds a wheel that is not the recorded one for the board.
    """
    folder = VENDORED.get((board.resolved_engine, board.arch, board.python))
    if folder is None:
        return None
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        return None
    if len(wheels) > 1:
        raise BoardError(f"{folder}: one wheel expected, found {', '.join(w.name for w in wheels)}")
    problems = wheel_problems(wheels[0], folder / RECORD, board.arch, board.python)
    if problems:
        raise BoardError(
            f"vendored wheel {wheels[0]} is not the recorded one: {'; '.join(problems)} "
            "(restore it with git, or rebuild it with `make ort-aarch64`)"
        )
    return wheels[0]
