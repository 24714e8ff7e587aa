"""Board checks: the board answers, is what its board file says, and can run an engine."""

from __future__ import annotations

import time

import pytest

from host.deploy.access import BoardAccess
from host.deploy.board import Board, ort_wheel_exists
from host.deploy.vendor import VENDORED
from host.hil.report import HilReport

# What proves an engine is there: its training API imports on the board's own Python.
# The ort engine imports the training API as edge_runtime/engines/ort_import.py does: without
# onnxruntime/training/__init__.py, which imports onnx (artifact generation) the board lacks.
ENGINE_IMPORTS = {
    "ort": (
        "import importlib.util, pathlib, sys, types\n"
        "d = pathlib.Path(importlib.util.find_spec('onnxruntime').origin).parent / 'training'\n"
        "p = types.ModuleType('onnxruntime.training')\n"
        "p.__path__ = [str(d)]\n"
        "sys.modules['onnxruntime.training'] = p\n"
        "sys.modules['onnxruntime.training.ortmodule'] = None\n"
        "import onnxruntime.training.api"
    ),
    "torch": "import torch",
}


def test_reachable(board_access: BoardAccess, hil_report: HilReport) -> None:
    t0 = time.perf_counter()
    out = board_access.run(["echo", "hiertrain-hil"], timeout=60)
    assert out.stdout.strip() == "hiertrain-hil"
    hil_report.record(command_roundtrip_s=round(time.perf_counter() - t0, 3))


def test_architecture(board: Board, board_access: BoardAccess, hil_report: HilReport) -> None:
    arch = board_access.run(["uname", "-m"], timeout=60).stdout.strip()
    hil_report.fact(arch=arch)
    assert arch == board.arch, f"the board file says arch {board.arch}, `uname -m` says {arch}"


def test_python(board: Board, board_access: BoardAccess, hil_report: HilReport) -> None:
    code = "import platform; print(platform.python_version())"
    version = board_access.run([board.interpreter, "-c", code], timeout=120).stdout.strip()
    hil_report.fact(python=version)
    major_minor = ".".join(version.split(".")[:2])
    assert major_minor == board.python, (
        f"the board file says Python {board.python}, {board.interpreter} on the board is {version}"
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("engine", sorted(ENGINE_IMPORTS))
def test_engine_import(
    engine: str, board: Board, board_access: BoardAccess, hil_report: HilReport
) -> None:
    """The board's engine must import; the other engine is checked where the board could have it."""
    wanted = engine == board.resolved_engine
    vendored = VENDORED.get(("ort", board.arch, board.python))
    has_wheel = vendored is not None and any(vendored.glob("*.whl"))
    if engine == "ort" and not (ort_wheel_exists(board.arch, board.python) or has_wheel):
        if wanted:
            pytest.fail(
                f"board file engine = ort, but onnxruntime-training has no wheel for "
                f"{board.arch}, Python {board.python}: build it from source (docs/boards.md) "
                'or use engine = "torch"'
            )
        pytest.skip(f"board has no onnxruntime-training ({board.arch}): ort engine skipped")
    t0 = time.perf_counter()
    result = board_access.run(
        [board.interpreter, "-c", ENGINE_IMPORTS[engine]], check=False, timeout=600
    )
    import_s = round(time.perf_counter() - t0, 3)
    if result.returncode != 0:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if wanted:
            pytest.fail(f"the board's engine {engine} does not import on {board.name}: {error}")
        pytest.skip(f"board has no {engine} engine ({error}): {engine} engine skipped")
    hil_report.record(**{f"{engine}_import_s": import_s})
