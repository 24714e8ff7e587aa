"""The ort engine finds the training API of 1.19.2 and of a 1.21.0 build, and says which.

The installed onnxruntime-training 1.19.2 is the real one. The 1.21.0 layout is the one the
aarch64 build produces (onnxruntime/__init__.py + onnxruntime/training/api/), laid out here as
files on PYTHONPATH in a fresh interpreter, since the aarch64 wheel cannot run on this host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge_runtime.engines import ort_import

REPO = Path(__file__).resolve().parents[2]


def probe(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that sees `site` before the installed packages."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def fake_onnxruntime(site: Path, version: str, training: bool) -> None:
    """onnxruntime/__init__.py (and training/api/ when `training`) as a build installs them."""
    package = site / "onnxruntime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f'__version__ = "{version}"\n')
    if training:
        api = package / "training" / "api"
        api.mkdir(parents=True)
        (api / "__init__.py").write_text("LAYOUT = 'onnxruntime.training.api'\n")


def test_describes_the_installed_1_19_2() -> None:
    said = ort_import.describe()
    assert said.startswith("onnxruntime 1.19.2: onnxruntime.training.api at ")
    assert said.endswith(str(Path("onnxruntime") / "training" / "api"))


def test_finds_and_imports_a_1_21_layout(tmp_path: Path) -> None:
    fake_onnxruntime(tmp_path, "1.21.0", training=True)
    code = (
        "from edge_runtime.engines import ort_import as o\n"
        "print(o.describe()); print(o.training_api().LAYOUT)"
    )
    done = probe(tmp_path, code)
    assert done.returncode == 0, done.stderr
    said, layout = done.stdout.splitlines()
    assert (
        said
        == f"onnxruntime 1.21.0: onnxruntime.training.api at {tmp_path}/onnxruntime/training/api"
    )
    assert layout == "onnxruntime.training.api"


def test_inference_only_onnxruntime_is_named_in_the_error(tmp_path: Path) -> None:
    fake_onnxruntime(tmp_path, "1.23.2", training=False)
    code = "from edge_runtime.engines import ort_import as o\no.training_api()"
    done = probe(tmp_path, code)
    assert done.returncode == 1
    assert "ImportError: onnxruntime 1.23.2 without a training API (the inference package)" in (
        done.stderr
    )
    assert "vendor/onnxruntime-aarch64" in done.stderr
