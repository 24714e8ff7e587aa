"""Boards whose image folders lack different classes label them alike, by the bundle's names.

A folder's labels were positions in its own sorted list of subfolders: a board with cat/ and
owl/ called owl 1, a board with dog/ and owl/ called dog 1, and one shared tail learned both as
one class. `hostctl export --classes` names the model's classes; each edge labels its folders by
those names and refuses a folder the bundle does not name. Without names the edge warns where
its folder holds fewer classes than the model. Real exports, real PNG files, the real CLIs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import fit_class_names, load_bundle
from edge_runtime.data import load_dataset

Image = pytest.importorskip("PIL.Image")

NAMES = ("cat", "dog", "owl")
SHAPE = (3, 8, 8)


def _folder(root: Path, classes: tuple[str, ...], per_class: int = 5) -> Path:
    rng = np.random.default_rng(len(classes))
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _edge_alone(bundle: Path, data: Path, work: Path) -> subprocess.CompletedProcess:
    """`edge-runtime run --mode edge` (no host needed) for one epoch on folder `data`."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge")),
            *("--mode", "edge", "--epochs", "1", "--data", f"folder:{data}"),
            *("--work-dir", str(work), "--report", str(work / "report.json")),
        ],
        capture_output=True, text=True, timeout=300, cwd=work.parent,
    )  # fmt: skip


@pytest.fixture(scope="module")
def named(exported) -> Path:
    return exported("smallcnn", 2, num_classes=3, classes=NAMES, input_shape=SHAPE, baselines=True)


def test_two_boards_lacking_different_classes_label_them_alike(named, tmp_path) -> None:
    manifest = load_bundle(named / "edge").manifest
    assert manifest["classes"] == list(NAMES)
    shown = subprocess.run(
        [sys.executable, "-m", "host.cli", "inspect", str(named)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "cat, dog, owl" in shown.stdout, shown.stdout + shown.stderr
    labels = {}
    for board, classes in (("a", ("cat", "owl")), ("b", ("dog", "owl"))):
        data = load_dataset(f"folder:{_folder(tmp_path / board, classes)}", test_fraction=0.0)
        assert data.y_train.max() == 1  # its own sorted order: owl is 1 on both boards
        data = fit_class_names(data, manifest)
        assert data.classes == NAMES and data.num_classes == 3
        labels[board] = sorted(set(data.y_train.tolist()))
    assert labels == {"a": [0, 2], "b": [1, 2]}  # cat 0, dog 1, owl 2 on either board


def test_an_edge_labels_by_name_and_refuses_a_folder_the_bundle_does_not_name(
    named, tmp_path
) -> None:
    work = tmp_path / "work"
    out = _edge_alone(named, _folder(tmp_path / "dogs-owls", ("dog", "owl")), work)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((work / "report.json").read_text())["final_accuracy"] is not None
    assert "names 2 of the model's 3" not in out.stderr  # the bundle names them: no warning
    out = _edge_alone(named, _folder(tmp_path / "emus", ("cat", "emu")), tmp_path / "work2")
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "class 'emu' is not one of the bundle's classes" in lines[0]
    assert "cat, dog, owl" in lines[0] and "--classes" in lines[0], lines


def test_without_names_a_folder_short_of_classes_is_warned_about(exported, tmp_path) -> None:
    bundle = exported("smallcnn", 2, num_classes=3, input_shape=SHAPE, baselines=True)
    work = tmp_path / "work"
    out = _edge_alone(bundle, _folder(tmp_path / "two", ("cat", "owl")), work)
    assert out.returncode == 0, out.stderr[-2000:]
    warned = [line for line in out.stderr.splitlines() if "names 2 of the model's 3" in line]
    assert len(warned) == 1 and "export with --classes" in warned[0], out.stderr[-2000:]


def test_export_refuses_class_names_that_do_not_fit(tmp_path) -> None:
    for names in ("cat,dog", "cat,cat,owl", "cat,,owl"):
        out = subprocess.run(
            [sys.executable, "-m", "host.cli", "export", "--model", "smallcnn", "--split", "2",
             "--num-classes", "3", "--classes", names, "--out", str(tmp_path / "b")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "--classes" in lines[0] and "3 distinct" in lines[0], lines
        assert not (tmp_path / "b").exists()
