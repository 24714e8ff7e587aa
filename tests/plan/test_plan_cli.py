"""`hostctl plan` as a user runs it: a real process, a table with every split, one marked best."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HOSTCTL = [sys.executable, "-m", "host.cli"]
SMALLCNN_SPLITS = (1, 2, 3, 4)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HOSTCTL, *args], capture_output=True, text=True, timeout=300)


def table_rows(stdout: str) -> dict[int, str]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1].isdigit():
            rows[int(cells[1])] = line
    return rows


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One real profiling run of smallcnn (every split), its step times saved."""
    path = tmp_path_factory.mktemp("plan") / "smallcnn.json"
    out = run(
        "plan", "--model", "smallcnn", "--link", "2mbit", "--samples", "4800",
        "--test-samples", "1200", "--steps", "1", "--save-profile", str(path),
    )  # fmt: skip
    return out, path


def test_plan_measures_every_split_and_marks_one_best(measured) -> None:
    out, path = measured
    assert out.returncode == 0, out.stderr
    rows = table_rows(out.stdout)
    assert sorted(rows) == list(SMALLCNN_SPLITS)
    marked = [n for n, line in rows.items() if "<- best" in line]
    assert len(marked) == 1
    assert f"split {marked[0]} is fastest:" in out.stdout
    assert all(("link-bound" in r) or ("compute-bound" in r) for r in rows.values())
    # Split learning at the same split: the int8 activation up against fp32 both ways, waiting
    # on every gradient: where the 2 Mbit/s line binds, well under split learning's time. A split
    # that the measured compute binds (a loaded machine times the cloud slow) is still faster
    # than split learning, whose stages add up instead of overlapping.
    for line in rows.values():
        vs_split = float(line.split("│")[8])
        assert 0 < vs_split < (0.5 if "link-bound" in line else 1.0), line
    saved = json.loads(path.read_text())
    assert [s["split"] for s in saved["splits"]] == list(SMALLCNN_SPLITS)
    assert saved["model"] == "smallcnn" and saved["batch_size"] == 32


def test_a_saved_profile_gives_the_same_plan_without_measuring(measured) -> None:
    first, path = measured
    again = run(
        "plan", "--model", "smallcnn", "--link", "2mbit", "--samples", "4800",
        "--test-samples", "1200", "--profile", str(path),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert table_rows(again.stdout) == table_rows(first.stdout)
    assert "exporting" not in again.stderr


def test_a_fast_link_moves_the_bottleneck_off_the_link(measured) -> None:
    _, path = measured
    out = run("plan", "--model", "smallcnn", "--link", "local", "--profile", str(path))
    assert out.returncode == 0, out.stderr
    rows = table_rows(out.stdout)
    assert all("compute-bound" in r for r in rows.values())


def test_only_the_asked_splits(measured) -> None:
    _, path = measured
    out = run("plan", "--model", "smallcnn", "--profile", str(path), "--splits", "2,3")
    assert out.returncode == 0, out.stderr
    assert sorted(table_rows(out.stdout)) == [2, 3]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--model", "nosuchnet"), "nosuchnet"),
        (("--model", "smallcnn", "--link", "fast"), "bad link spec 'fast'"),
        (("--model", "smallcnn", "--splits", "2,9"), "--splits 9"),
        (("--model", "smallcnn", "--splits", "two"), "--splits 'two'"),
        (("--model", "smallcnn", "--input-shape", "3x32"), "--input-shape"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...], says: str) -> None:
    out = run("plan", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostctl: error:") and says in lines[0]
    assert out.stdout == ""


def test_a_profile_of_another_model_is_a_usage_error(tmp_path) -> None:
    path = tmp_path / "r18.json"
    path.write_text(json.dumps({"model": "resnet18", "splits": [{"split": 1, "edge_step_s": 1}]}))
    out = run("plan", "--model", "smallcnn", "--profile", str(path))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "hostctl: error: the profile was measured with model resnet18, the plan asks for "
        "smallcnn: plan with --model resnet18 or profile again"
    )


def test_profiling_codes_the_splits_own_activations(measured) -> None:
    """Each split's profile has every codec's ratio and times, measured on its activation."""
    _, path = measured
    for entry in json.loads(path.read_text())["splits"]:
        assert entry["codec:fp32:ratio"] == pytest.approx(1.0, abs=0.01)
        # Post-ReLU activations: the lossless coding is well under fp32, int8+z under int8.
        assert entry["codec:fp32+z:ratio"] < 0.9, entry
        assert entry["codec:int8+z:ratio"] < entry["codec:int8:ratio"], entry
        assert entry["codec:fp32+z:encode_s"] > 0 and entry["codec:fp32+z:decode_s"] > 0


def test_a_user_model_with_its_own_class_count(tmp_path) -> None:
    """A factory that takes no num_classes and gives 7: profiling trains it on labels of its
    own range ("IndexError: Target 7 is out of bounds" under the default --num-classes 10)."""
    (tmp_path / "gray.py").write_text(
        "import torch.nn as nn\n"
        "def net():\n"
        "    return nn.Sequential(\n"
        "        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),\n"
        "        nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),\n"
        "        nn.Flatten(), nn.Linear(8 * 7 * 7, 7))\n"
    )
    out = run("plan", "--model", f"{tmp_path / 'gray.py'}:net", "--input-shape", "1x28x28",
              "--splits", "2", "--steps", "1", "--link", "3g")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert 2 in table_rows(out.stdout), out.stdout
