"""A bundle's manifest is checked against its schema: a missing or wrong field is one line
naming it, never a KeyError; the file list is mandatory (no silent skip of hash checks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.bundle import BundleError, load_bundle

FIELDS = ("model", "split", "input_shape", "num_classes", "activation", "edge", "cloud", "files")


def _copy_without(exported, tmp_path: Path, field: str, value: object = None) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(exported("smallcnn", 3, lr=3e-3), root)
    for manifest in [root / "manifest.json", *root.glob("*/manifest.json")]:
        data = json.loads(manifest.read_text())
        if value is None:
            data.pop(field)
        else:
            data[field] = value
        manifest.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("field", FIELDS)
def test_a_missing_field_is_named(exported, tmp_path: Path, field: str) -> None:
    root = _copy_without(exported, tmp_path, field)
    for half in (root, root / "edge", root / "cloud"):
        with pytest.raises(BundleError, match=f"field '{field}' is missing"):
            load_bundle(half)


@pytest.mark.parametrize(
    "field, value",
    [("split", "3"), ("input_shape", [32, 32]), ("num_classes", 1), ("files", {})],
)
def test_a_wrong_field_is_named_with_what_is_valid(exported, tmp_path, field, value) -> None:
    root = _copy_without(exported, tmp_path, field, value)
    with pytest.raises(BundleError, match=f"field '{field}' is .* but must be"):
        load_bundle(root)


def test_the_edge_cli_says_it_in_one_line(exported, tmp_path: Path) -> None:
    root = _copy_without(exported, tmp_path, "files")
    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(root / "edge"),
         "--connect", "socket://127.0.0.1:9", "--work-dir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'files' is missing" in lines[0], out.stderr
