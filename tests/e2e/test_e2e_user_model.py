"""A user model from a file, end to end: export it, then serve it from the whole bundle.

`hostctl serve --bundle DIR` (as the README shows it), `hostctl demo --bundle DIR` and
`hostctl bench --model file.py:factory` each load the whole bundle on the host, where the
tail trainer rebuilds the user model from the source the export bundled. That path once
failed for every user model (`BundleError: path() needs a side`), in the cloud's listener
thread, while the edge waited for a welcome; a zoo model never reached it. Real
subprocesses, real TCP, a few batches per run, for both edge engines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_harness import ENV, run_edge, start_cloud

from edge_runtime.bundle import CODE_DIR, load_bundle

pytestmark = pytest.mark.slow

ENGINES = ("ort", "torch")
# synthetic:160 -> 128 train / 32 test samples: 4 training batches of 32.
DATA, BATCHES = "synthetic:160", 4

USER_MODEL = '''\
"""A small user model: three named blocks, BatchNorm included (what a user's file looks like)."""

from collections import OrderedDict

from torch import nn


def factory(input_shape=(3, 32, 32), num_classes=10):
    channels = input_shape[0]
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(
                nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
            ),
            body=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            classifier=nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes)
            ),
        )
    )
'''


def hostctl(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=ENV,
    )


def write_user_model(directory: Path) -> Path:
    path = directory / "tiny_model.py"
    path.write_text(USER_MODEL)
    return path


@pytest.fixture(scope="module")
def user_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user model exported at split 1; its source file removed once the bundle holds a copy."""
    work = tmp_path_factory.mktemp("user-model")
    source = write_user_model(work)
    out = hostctl(
        "export", "--model", f"{source}:factory", "--split", "1", "--out", "bundle", cwd=work
    )
    assert out.returncode == 0, out.stderr[-3000:]
    bundle = work / "bundle"
    # What serves the run is the bundled copy, not the file the model was exported from.
    source.unlink()
    manifest = load_bundle(bundle).manifest
    assert manifest["model_spec"]["bundled_source"] == f"{CODE_DIR}/{source.name}"
    assert manifest["edge_blocks"] == ["stem"] and manifest["tail_blocks"] == ["body", "classifier"]
    return bundle


@pytest.mark.parametrize("engine", ENGINES)
def test_serve_trains_a_user_model_from_the_whole_bundle(user_bundle, tmp_path, engine) -> None:
    cloud = start_cloud(user_bundle, tmp_path)  # --bundle DIR: the whole bundle, as in README
    try:
        edge = run_edge(
            user_bundle,
            cloud.url,
            tmp_path,
            "--data",
            DATA,
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--engine",
            engine,
        )
        report = cloud.finish()
    finally:
        if cloud.proc.poll() is None:
            cloud.proc.kill()
            cloud.proc.wait()
    assert edge["batches_sent"] == BATCHES
    assert report["batches_trained_cloud"] == BATCHES
    assert cloud.rows() == BATCHES
    assert report["model"].endswith("tiny_model.py:factory")


@pytest.mark.parametrize("engine", ENGINES)
def test_demo_runs_a_user_model_bundle(user_bundle, tmp_path, engine) -> None:
    out = hostctl(
        "demo",
        "--bundle",
        str(user_bundle),
        "--engine",
        engine,
        "--data",
        DATA,
        "--epochs",
        "1",
        "--link",
        "local",
        "--work-dir",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert report["model"].endswith("tiny_model.py:factory")
    assert report["final_accuracy"] is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_bench_runs_every_mode_on_a_user_model_file(tmp_path, engine) -> None:
    source = write_user_model(tmp_path)
    out = hostctl(
        "bench",
        "--model",
        f"{source}:factory",
        "--split",
        "1",
        "--modes",
        "hierarchical,split,cloud,edge",
        "--engine",
        engine,
        "--data",
        DATA,
        "--link",
        "local",
        "--out",
        str(tmp_path / "b"),
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    modes = json.loads((tmp_path / "b" / "bench.json").read_text())["modes"]
    assert set(modes) == {"hierarchical", "split", "cloud", "edge"}
    assert modes["hierarchical"]["batches_trained_cloud"] == BATCHES
    assert modes["split"]["batches_trained_cloud"] == BATCHES
    for mode in modes.values():
        assert mode["final_accuracy"] is not None


def test_demo_runs_where_the_user_keeps_a_models_folder(user_bundle, tmp_path) -> None:
    """A user's project folder often holds its own `models/` (or `host/`) package. `hostctl`
    started the edge as `python -m edge_runtime.cli`, which put the working directory first
    on sys.path, so the user's `models` shadowed ours: the torch engine failed with "cannot
    import name 'EdgeNet' from 'models'". Run from such a folder with the console script, as a
    user does (a `python -m host.cli` here would itself import the user's package)."""
    for name in ("models", "host"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text('"""The user\'s own package."""\n')
    hostctl_script = Path(sys.executable).parent / "hostctl"
    out = subprocess.run(
        [
            str(hostctl_script),
            "demo",
            "--bundle",
            str(user_bundle),
            "--engine",
            "torch",
            "--data",
            DATA,
            "--epochs",
            "1",
            "--link",
            "local",
            "--work-dir",
            "demo",
            "--model-out",
            "model",
            "--infer",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert (tmp_path / "model" / "model.json").is_file()
    assert "inference:" in out.stdout


def test_a_package_model_from_the_working_directory_travels_in_the_bundle(tmp_path) -> None:
    """`package.module:factory` found in the working directory (not installed): its package goes
    into the bundle's code/ as a file model's folder does. It did not, so the bundle worked only
    where that directory was the working directory: serve elsewhere failed with "No module
    named 'mypkg'" (the host rebuilds the tail), as did the torch engine on a board."""
    project = tmp_path / "project"
    (project / "mypkg" / "nets").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "nets" / "__init__.py").write_text("")
    (project / "mypkg" / "nets" / "tiny.py").write_text(USER_MODEL)
    out = hostctl("export", "--model", "mypkg.nets.tiny:factory", "--split", "1", "--out",
                  str(tmp_path / "bundle"), cwd=project)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    shutil.rmtree(project)  # what runs is the bundled copy
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert "mypkg" in manifest["code"]["files"]
    out = hostctl(
        "demo", "--bundle", str(tmp_path / "bundle"), "--engine", "torch", "--data", DATA,
        "--epochs", "1", "--link", "local", "--work-dir", str(tmp_path / "demo"),
        "--model-out", str(tmp_path / "model"), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert (tmp_path / "model" / "code" / "mypkg" / "nets" / "tiny.py").is_file()
