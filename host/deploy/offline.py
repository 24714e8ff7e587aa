"""`hostctl bundle`: an offline deploy bundle for one board's platform.

A deploy bundle is everything a board needs to install and run the edge without network:

    OUT/deploy-manifest.json   board platform, engine, sha256 of every file below
    OUT/edge/                  the export bundle's edge half (verified before it is copied)
    OUT/wheels/                the hiertrain wheel and, unless --skip-deps, every dependency
                               wheel for the board's architecture and Python

The manifest is written deterministically (no time stamps, a reproducible wheel), so bundling
the same inputs again gives the same release id on the board and deploy says "up to date".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edge_runtime.bundle import (
    BundleError,
    load_bundle,
    mismatched_files,
    read_manifest,
    sha256_listing,
    sha256_under,
)
from host.deploy.board import Board, ort_wheel_exists
from host.deploy.errors import BoardError, DeployError
from host.deploy.vendor import vendored_wheel
from host.deploy.wheels import (
    download_for_board,
    parse_wheel_filename,
    requires_dist,
    target_environment,
)

DEPLOY_MANIFEST = "deploy-manifest.json"
DEPLOY_FORMAT = "hiertrain-deploy/1"
REPO = Path(__file__).resolve().parents[2]
# What goes into our wheel: the packages pyproject.toml finds, and the files it reads.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "host", "edge_runtime", "models")
# 1980-01-01, the earliest time a zip can hold: the wheel's bytes do not depend on when it is built.
REPRODUCIBLE_EPOCH = "315532800"

# engine -> (extra of our wheel, requirement per architecture)
ENGINE_REQUIREMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "ort": ("edge", {"x86_64": "onnxruntime-training==1.19.2"}),
    # torch 2.8.0 is the newest aarch64 CPU wheel; later aarch64 wheels are CUDA builds.
    "torch": ("edge-torch", {"x86_64": "torch==2.13.0", "aarch64": "torch==2.8.0"}),
}


@dataclass(frozen=True)
class DeployBundle:
    """A verified deploy bundle directory."""

    root: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def release(self) -> str:
        """The release id on the board: the manifest's sha256, first 12 hex digits."""
        return self.manifest_sha256[:12]

    @property
    def files(self) -> dict[str, str]:
        return dict(self.manifest["files"])


def wheel_requirements(wheel: Path, extra: str, board: Board) -> list[str]:
    """What `pip install hiertrain[extra]` needs on the board, read from our wheel's own
    metadata (its base dependencies and the extra's, markers evaluated for the board)."""
    return [str(r) for r in requires_dist(wheel, [extra], target_environment(board))]


def engine_requirements(board: Board) -> tuple[str, list[str]]:
    """(extra, requirements) of the board's engine; BoardError where no wheel exists.

    Where upstream publishes no wheel but vendor/ holds one we built (`vendored_wheel`), the
    requirement names that wheel's version: the bundle carries the wheel (`engine_wheels`).
    """
    engine = board.resolved_engine
    extra, per_arch = ENGINE_REQUIREMENTS[engine]
    if engine == "ort" and not ort_wheel_exists(board.arch, board.python):
        own = vendored_wheel(board)
        if own is not None:
            name, version, _build, _tags = parse_wheel_filename(own.name)
            return extra, [f"{name}=={version}"]
        raise BoardError(
            f'board file {board.path}: engine = "ort" needs onnxruntime-training, which has '
            f"wheels only for x86_64 and Python <= 3.11 (this board: {board.arch}, Python "
            f'{board.python}) and none is vendored for it; use engine = "torch", or build ORT '
            "training from source (`make ort-aarch64` for aarch64 / Python 3.11) and deploy "
            "with --skip-deps (docs/boards.md)"
        )
    if board.arch not in per_arch:
        raise BoardError(
            f"board file {board.path}: no {engine} wheel is published for {board.arch}; "
            "use a 64-bit OS (aarch64) on the board, or install the engine there yourself "
            "and deploy with --skip-deps (docs/boards.md)"
        )
    return extra, [per_arch[board.arch]]


def build_wheel(dest: Path, source: Path = REPO) -> Path:
    """Build the hiertrain wheel into `dest`, from a clean copy of the sources.

    The copy keeps the build (build/, *.egg-info) out of the working tree, and a fixed
    SOURCE_DATE_EPOCH makes the wheel the same bytes each time for the same sources.
    """
    missing = [name for name in WHEEL_SOURCES if not (source / name).exists()]
    if missing:
        raise BoardError(
            f"building the hiertrain wheel needs the source tree; {source} lacks "
            f"{', '.join(missing)} (run hostctl from a checkout)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hiertrain-wheel-") as tmp:
        stage = Path(tmp) / "src"
        stage.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in WHEEL_SOURCES:
            src = source / name
            if src.is_dir():
                shutil.copytree(src, stage / name, ignore=ignore)
            else:
                shutil.copyfile(src, stage / name)
        out = Path(tmp) / "out"
        env = dict(os.environ, SOURCE_DATE_EPOCH=REPRODUCIBLE_EPOCH, PYTHONDONTWRITEBYTECODE="1")
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        result = subprocess.run(
            [*argv, "--no-index", "-q", "-w", str(out), str(stage)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        wheels = sorted(out.glob("hiertrain-*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise DeployError("wheel", f"building the hiertrain wheel failed: {tail}")
        target = dest / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return target


def make_deploy_bundle(
    board: Board,
    bundle_dir: Path,
    out: Path,
    *,
    skip_deps: bool = False,
    wheel: Path | None = None,
    on_progress: Callable[[str], None] = lambda _line: None,
) -> DeployBundle:
    """Write the deploy bundle for `board` from the export bundle `bundle_dir` into `out`.

    `wheel`: a hiertrain wheel built before (by `build_wheel`), instead of building one now.
    """
    bundle = load_bundle(bundle_dir)
    if bundle.side == "cloud":
        raise BoardError(f"--bundle {bundle_dir}: give the bundle directory or its edge/ half")
    edge_src = bundle_dir / "edge" if bundle.side == "all" else bundle_dir
    load_bundle(edge_src)  # the edge half on its own, as the board will load it
    engines = bundle.manifest.get("engines", ["ort", "torch"])
    if board.resolved_engine not in engines:
        raise BoardError(
            f"board file {board.path}: engine = {board.resolved_engine!r}, but {bundle_dir} was "
            f'exported for {", ".join(engines)} only; set engine = "{engines[0]}" in the '
            "board file, or re-export the bundle for this engine"
        )
    extra, engine_reqs = engine_requirements(board) if not skip_deps else _extra_only(board)
    _prepare_out(out)
    try:
        shutil.copytree(edge_src, out / "edge")
        wheels = out / "wheels"
        if wheel is None:
            on_progress("building the hiertrain wheel")
            wheel = build_wheel(wheels)
        else:
            wheels.mkdir()
            wheel = Path(shutil.copy2(wheel, wheels / wheel.name))
        own = None if skip_deps else vendored_wheel(board)
        if own is not None:  # pip download finds it among the wheels, and fetches what it requires
            on_progress(f"the vendored engine wheel {own.name}")
            shutil.copy2(own, wheels / own.name)
        # The model's own requirements (`hostctl export --requires`): its code runs on the board.
        model_reqs = list(bundle.manifest.get("code", {}).get("requires", []))
        # The engine's pin narrows the extra's (torch -> the board's torch version).
        requirements = (
            []
            if skip_deps
            else [*wheel_requirements(wheel, extra, board), *engine_reqs, *model_reqs]
        )
        if requirements:
            on_progress(f"pip download for {board.arch}, Python {board.python}")
            download_for_board(board, requirements, wheels, on_progress)
        files = {
            rel: sha
            for rel, sha in sha256_listing(out).items()
            if PurePosixPath(rel).name != DEPLOY_MANIFEST
        }
        manifest = {
            "format": DEPLOY_FORMAT,
            "board": {"name": board.name, "arch": board.arch, "python": board.python},
            "engine": board.resolved_engine,
            "extra": extra,
            "skip_deps": skip_deps,
            "requirements": requirements,
            "wheel": wheel.relative_to(out).as_posix(),
            "bundle": {
                "manifest_sha256": bundle.manifest_sha256,
                "model": bundle.model,
                "split": bundle.split,
            },
            "files": files,
        }
        raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        (out / DEPLOY_MANIFEST).write_bytes(raw)
    except BaseException:
        # A half-made bundle (a failed download, Ctrl-C) is removed, so that the same
        # command runs again; pip's own cache keeps what was downloaded.
        _clear(out)
        raise
    return DeployBundle(out, manifest, hashlib.sha256(raw).hexdigest())


def _extra_only(board: Board) -> tuple[str, list[str]]:
    # --skip-deps: the board brings its own engine, so any arch/engine pair is allowed.
    return ENGINE_REQUIREMENTS[board.resolved_engine][0], []


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / DEPLOY_MANIFEST).is_file():
        raise BoardError(
            f"--out {out} exists and is not a deploy bundle (no {DEPLOY_MANIFEST}); "
            "give a new or empty directory"
        )
    _clear(out)
    out.mkdir(parents=True, exist_ok=True)


def _clear(out: Path) -> None:
    """Remove what a deploy bundle consists of from `out` (nothing else)."""
    for name in ("edge", "wheels", DEPLOY_MANIFEST):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def load_deploy_bundle(path: Path) -> DeployBundle:
    """Read a deploy bundle and check every file against its manifest (BoardError if not)."""
    try:
        manifest, raw = read_manifest(
            Path(path) / DEPLOY_MANIFEST,
            DEPLOY_FORMAT,
            what="a deploy bundle",
            make="hostctl bundle --board FILE --bundle DIR",
            remake="run hostctl bundle again",
        )
    except BundleError as exc:
        raise BoardError(str(exc)) from None
    for bad in mismatched_files(manifest["files"], sha256_under(Path(path)), first_only=True):
        if bad.actual is None:
            raise BoardError(f"deploy bundle {path} is incomplete: {bad.rel} is missing")
        raise BoardError(
            f"deploy bundle {path} was modified: {bad.rel} differs from {DEPLOY_MANIFEST} "
            "(run hostctl bundle again)"
        )
    return DeployBundle(Path(path), manifest, hashlib.sha256(raw).hexdigest())
