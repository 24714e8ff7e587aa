"""hostctl's contract: names, exit codes, one-line usage errors (real processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HOSTCTL = [sys.executable, "-m", "host.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HOSTCTL, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_export_default_out_dir_and_inspect(tmp_path) -> None:
    out = run("export", "--model", "smallcnn", "--split", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    bundle = tmp_path / "artifacts" / "smallcnn-split2"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["split"] == 2
    assert "[I:onnxruntime" not in out.stderr  # export is quiet
    shown = run("inspect", str(bundle))
    assert shown.returncode == 0, shown.stderr
    assert "conv1, conv2" in shown.stdout and "sha256 verified" in shown.stdout


def test_inspect_model_table_lists_every_split() -> None:
    out = run("inspect", "--model", "resnet18")
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 9  # splits 1..9
    assert "128x16x16" in out.stdout and "85.33" in out.stdout


def test_usage_errors_exit_2_with_one_line(tmp_path) -> None:
    cases = {
        ("export", "--split", "12"): "valid 1..9",
        (
            "export",
            "--model",
            "alexnet",
            "--split",
            "2",
        ): "known models are resnet18, vgg16, smallcnn",
        ("export", "--split", "2", "--input-shape", "32x32"): "expected C x H x W",
        ("inspect",): "needs a bundle directory or --model",
    }
    for args, expected in cases.items():
        out = run(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, out.stderr)


def test_runtime_failure_exits_1_without_traceback(exported, tmp_path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(exported("smallcnn", 2), copy)
    (copy / "cloud" / "tail_model.onnx").write_bytes(b"tampered")
    out = run("inspect", str(copy))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "modified: cloud/tail_model.onnx" in out.stderr


def test_export_baselines_for_the_other_modes(digits_path, tmp_path) -> None:
    """`hostctl export --baselines` (the edge's error asks for it; export had no such option)
    writes what --mode edge/split/cloud need: the edge trains the whole network alone."""
    out = run("export", "--model", "smallcnn", "--split", "2", "--input-shape", "1x8x8",
              "--baselines", "--out", "b", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["baselines"] is True
    assert (tmp_path / "b" / "edge" / "split").is_dir()
    edge = [sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(tmp_path / "b" / "edge"),
            "--mode", "edge", "--data", str(digits_path), "--epochs", "1"]  # fmt: skip
    alone = subprocess.run(edge, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert "edge-only done: accuracy" in alone.stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/PID/maps")
def test_ctrl_c_while_onnxruntime_imports_is_an_interruption(tmp_path) -> None:
    """SIGINT once onnxruntime's extension is mapped (export imports it after torch): its
    init turns the KeyboardInterrupt into "ImportError: initialization failed", which the
    CLI reported as a failure (exit 1); a Ctrl-C is an interruption (130)."""
    import signal
    import time

    proc = subprocess.Popen([*HOSTCTL, "export", "--model", "smallcnn", "--split", "2",
                             "--out", str(tmp_path / "b")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if "onnxruntime_pybind11" in Path(f"/proc/{proc.pid}/maps").read_text():
                    break
            except OSError:  # gone already
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "hostctl: interrupted", err[-2000:]
    assert "ImportError" not in err and "Traceback" not in err


def test_serve_model_out_needs_a_mode_with_an_exit(exported, tmp_path) -> None:
    """serve --mode split --model-out: one line and exit 2 at once, as demo says it (the run
    trained to its end, then failed: "edge ... sent no trained model (it stopped before the
    end of its run)")."""
    bundle = exported("smallcnn", 2)
    for mode in ("split", "cloud"):
        out = run("serve", "--bundle", str(bundle), "--mode", mode, "--listen", "tcp://127.0.0.1:0",
                  "--model-out", str(tmp_path / "m"), cwd=tmp_path)  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines() == [
            f"hostctl: error: --mode {mode} trains no early exit: --model-out needs one"
        ]
    # The edge's own --model-out alike (it wrote nothing, silently).
    edge = [sys.executable, "-m", "edge_runtime.cli", "run", "--bundle", str(bundle / "edge"),
            "--mode", "split", "--model-out", str(tmp_path / "m"), "--connect", "socket://127.0.0.1:9"]  # fmt: skip
    out = subprocess.run(edge, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "edge-runtime: error: --mode split trains no early exit: --model-out needs one"
    ]


def test_tables_print_user_names_as_given(exported, tmp_path) -> None:
    """A user's names reach the tables verbatim: rich read `tiny.py:factory: split points` (the
    README's own form) as the emoji code :factory: ("tiny.py🏭 split points"), and a bundle
    directory `run[v2]` as markup ("bundle run")."""
    (tmp_path / "tiny.py").write_text(
        "from torch import nn\n\n\ndef factory():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Flatten(), "
        "nn.LazyLinear(10)))\n"
    )
    table = run("inspect", "--model", "tiny.py:factory", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "tiny.py:factory: split points" in table.stdout, table.stdout
    copy = tmp_path / "run[v2]"
    shutil.copytree(exported("smallcnn", 2), copy)
    shown = run("inspect", str(copy))
    assert shown.returncode == 0, shown.stderr
    assert f"bundle {copy}" in shown.stdout, shown.stdout
