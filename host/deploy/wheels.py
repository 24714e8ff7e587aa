"""Dependency wheels for another platform: the board's architecture and Python, not ours.

`pip download --platform ... --python-version ...` picks wheels for the board, but evaluates
environment markers for *this* machine: torch's `nvidia-*; platform_machine == "x86_64"`
dependencies would come along for an aarch64 board and fail to resolve. So pip downloads one
level at a time with `--no-deps`, and the markers of each wheel's `Requires-Dist` are evaluated
here for the board, until no new requirement turns up.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import (  # type: ignore[no-redef]
        canonicalize_name,
        parse_wheel_filename,
    )
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

from host.deploy.board import Board
from host.deploy.errors import DeployError

# pip --platform takes each tag literally (it does not widen manylinux_2_28 to older ones), so
# every tag a board accepts is listed: manylinux_2_28 (numpy, torch), manylinux2014 / _2_17
# (zstandard, protobuf), and linux_aarch64, the tag of our own onnxruntime-training build
# (vendor/). armv7l has no manylinux wheels of numpy; piwheels builds linux_armv7l
# (docs/boards.md).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "aarch64": (
        "manylinux_2_28_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "linux_aarch64",
    ),
    "armv7l": ("manylinux_2_28_armv7l", "linux_armv7l"),
}
MAX_ROUNDS = 12  # dependency depth; real trees are 3-4 deep


def target_environment(board: Board) -> dict[str, str]:
    """PEP 508 marker variables of the board (a CPython on Linux)."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{board.python}.0",
        "os_name": "posix",
        "platform_machine": board.arch,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{board.python}.0",
        "python_version": board.python,
        "sys_platform": "linux",
    }


def pip_download_argv(board: Board, requirements: Iterable[str], dest: Path) -> list[str]:
    """One `pip download --no-deps` of `requirements` as wheels for the board's platform."""
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    argv.append("--progress-bar=off")
    for tag in PLATFORMS[board.arch]:
        argv += ["--platform", tag]
    argv += ["--python-version", board.python, "--implementation", "cp"]
    # --find-links dest: a wheel put there beforehand (a vendored engine) satisfies its pin.
    argv += ["--abi", f"cp{board.python_tag}", "--find-links", str(dest), "-d", str(dest)]
    argv += requirements
    return argv


def requires_dist(wheel: Path, extras: Iterable[str], env: dict[str, str]) -> list[Requirement]:
    """The wheel's dependencies that apply on the board, with the given extras."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(zf.read(name).decode("utf-8"))
    wanted = []
    for line in metadata.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or any(
            req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras)
        ):
            req.marker = None
            wanted.append(req)
    return wanted


def _merge(old: Requirement | None, new: Requirement) -> Requirement:
    if old is None:
        return new
    merged = Requirement(old.name)
    merged.specifier = old.specifier & new.specifier
    merged.extras = old.extras | new.extras
    return merged


def _wheels_of(dest: Path) -> dict[str, list[tuple[Version, Path]]]:
    found: dict[str, list[tuple[Version, Path]]] = {}
    for path in dest.glob("*.whl"):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        found.setdefault(name, []).append((version, path))
    return found


def download_for_board(
    board: Board, requirements: list[str], dest: Path, on_line: Callable[[str], None]
) -> list[Path]:
    """Download `requirements` and everything they need on the board as wheels into `dest`."""
    env = target_environment(board)
    wanted: dict[str, Requirement] = {}
    chosen: dict[str, Path] = {}
    queue = [Requirement(r) for r in requirements]
    for _round in range(MAX_ROUNDS):
        batch: dict[str, Requirement] = {}
        for req in queue:
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            name = canonicalize_name(req.name)
            merged = _merge(wanted.get(name), req)
            have = chosen.get(name)
            if have is not None and merged.extras == wanted[name].extras:
                version = parse_wheel_filename(have.name)[1]
                if merged.specifier.contains(version, prereleases=True):
                    continue
            wanted[name] = batch[name] = merged
        if not batch:
            return sorted(chosen.values())
        _pip(board, [str(r) for r in batch.values()], dest, on_line)
        present = _wheels_of(dest)
        queue = []
        for name, req in batch.items():
            fits = [(v, p) for v, p in present.get(name, []) if req.specifier.contains(v, True)]
            if not fits:
                raise DeployError("download", f"pip saved no wheel for {req} in {dest}")
            chosen[name] = max(fits)[1]
            for _v, other in present[name]:  # an older pick that a tighter pin replaced
                if other != chosen[name]:
                    other.unlink()
            queue += requires_dist(chosen[name], req.extras, env)
    raise DeployError("download", f"dependencies deeper than {MAX_ROUNDS} levels: {queue[:5]}")


def _pip(board: Board, requirements: list[str], dest: Path, on_line: Callable[[str], None]) -> None:
    argv = pip_download_argv(board, requirements, dest)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            if line and not line.startswith("WARNING: Location"):
                tail = [*tail[-7:], line]
                on_line(line)
        code = proc.wait()
    if code != 0:
        raise DeployError(
            "download",
            f"pip download for {board.name} ({board.arch}, Python {board.python}) failed: "
            + " | ".join(tail[-4:]),
        )
