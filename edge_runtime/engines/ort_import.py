"""Import the ONNX Runtime training API without what the board does not need.

`onnxruntime/training/__init__.py` (1.19.2) imports `artifacts` (which needs onnx) and, through
`import onnxruntime`'s build validation, `ORTModule` (which needs torch). The on-device API
(`onnxruntime.training.api`) needs neither. When onnxruntime is not yet imported in this process,
we register the `onnxruntime.training` package without running its __init__ and mark ORTModule
absent; the validation treats that as a build without ORTModule. A process that already
imported onnxruntime (the host) gets the normal import. Measured: 57 MB RSS instead of 293 MB
for an edge process, and neither torch nor onnx in sys.modules (tests/engines check this).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path


def _training_dir() -> Path | None:
    spec = importlib.util.find_spec("onnxruntime")  # finds, does not import
    if spec is None or spec.origin is None:
        return None
    training_dir = Path(spec.origin).parent / "training"
    return training_dir if (training_dir / "api").is_dir() else None


def _version(package_dir: Path) -> str:
    """`__version__` from onnxruntime/__init__.py, read as text: importing would be heavy."""
    match = re.search(r'^__version__ = "([^"]+)"', (package_dir / "__init__.py").read_text(), re.M)
    return match.group(1) if match else "unknown version"


def describe() -> str:
    """Which training API this process would import, said without importing it.

    1.19.2 (the last PyPI release) and 1.21.0 (the aarch64 wheel of tools/ort-aarch64) put it
    in the same place, onnxruntime/training/api: ORT's build copies the sources of
    orttraining/orttraining/python/training/api there (cmake/onnxruntime_python.cmake), and the
    five files are identical between the two versions.
    """
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        return "onnxruntime is not installed"
    package_dir = Path(spec.origin).parent
    training_dir = _training_dir()
    if training_dir is None:
        return f"onnxruntime {_version(package_dir)} without a training API (the inference package)"
    return (
        f"onnxruntime {_version(package_dir)}: onnxruntime.training.api at {training_dir / 'api'}"
    )


def available() -> bool:
    """Whether onnxruntime-training is installed, checked without importing it."""
    return _training_dir() is not None


def training_api() -> types.ModuleType:
    """Return `onnxruntime.training.api`, imported as lightly as this process allows."""
    if "onnxruntime" not in sys.modules:
        training_dir = _training_dir()
        if training_dir is None:
            raise ImportError(
                f"{describe()}: install onnxruntime-training (pip install hiertrain[edge]; "
                "aarch64: vendor/onnxruntime-aarch64, see docs/boards.md)"
            )
        package = types.ModuleType("onnxruntime.training")
        package.__path__ = [str(training_dir)]
        package.__package__ = "onnxruntime.training"
        sys.modules["onnxruntime.training"] = package
        sys.modules.setdefault("onnxruntime.training.ortmodule", None)  # type: ignore[arg-type]
    import onnxruntime.training.api as api

    return api


def inference_runtime() -> types.ModuleType:
    """`onnxruntime` for inference sessions, as light as `training_api` where the training
    package is what is installed (its plain import pulls in torch and onnx); the inference
    package (aarch64 wheels) imports as it is."""
    if "onnxruntime" not in sys.modules and available():
        training_api()
    import onnxruntime

    return onnxruntime
