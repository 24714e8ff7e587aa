"""What `edge-runtime infer` answers from a user's own data: inputs scaled as in training
(model.json's normalisation, whatever the data file holds besides), and `--limit` counting the
samples answered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.data import load_dataset
from edge_runtime.errors import UsageFault
from edge_runtime.infer.command import PolicyOptions, run_infer
from edge_runtime.infer.runner import EdgeModel


def _answer(model_dir: Path, spec: str, limit: int | None = None) -> dict:
    """Every sample answered at the board (threshold 0, no host), as the CLI runs it."""
    return run_infer(
        model_dir,
        None,
        spec,
        policy_options=PolicyOptions(threshold=0.0),
        codec="fp32",
        key_file=None,
        edge_id="board",
        connect_timeout=1.0,
        answer_timeout=1.0,
        baud=115200,
        limit=limit,
        report_path=None,
        say=lambda _line: None,
    )


def _expected(model_dir: Path, images: np.ndarray) -> list[int]:
    """The exit's classes for raw uint8 images scaled with model.json's statistics."""
    model = EdgeModel(model_dir)
    norm = model.description["normalisation"]
    mean = np.asarray(norm["mean"], np.float32)[:, None, None]
    std = np.asarray(norm["std"], np.float32)[:, None, None]
    x = ((images.astype(np.float32) * norm["pixel_scale"] - mean) / std).astype(np.float32)
    logits, _ = model(x)
    return logits.argmax(1).tolist()


def test_new_samples_are_scaled_as_the_model_was_trained(trained, digits_path, tmp_path) -> None:
    """A file of 40 digits to classify beside 10 blank images: the answers are those of the
    training normalisation, not of statistics taken from this file's train split."""
    model_dir = trained[3]
    digits = load_dataset(str(digits_path))
    new = digits.x_test[:40]
    blank = np.zeros((10, *new.shape[1:]), np.uint8)
    path = tmp_path / "new.npz"
    np.savez(path, x=blank, y=np.zeros(10, np.int64), x_test=new, y_test=digits.y_test[:40])
    report = _answer(model_dir, f"npz:{path}")
    assert report["samples"] == 40
    assert report["predictions"] == _expected(model_dir, new)


def test_limit_counts_the_samples_answered(trained, digits_path) -> None:
    """--limit N answers the first N held-out samples (it used to cut the train split and
    answer all 360)."""
    model_dir = trained[3]
    report = _answer(model_dir, str(digits_path), limit=7)
    assert report["samples"] == 7
    held_out = load_dataset(str(digits_path)).x_test[:7]
    assert report["predictions"] == _expected(model_dir, held_out)
    with pytest.raises(UsageFault, match="--limit 0"):
        _answer(model_dir, str(digits_path), limit=0)


def test_the_summary_is_one_line_in_a_pipe(trained, digits_path) -> None:
    """Where stderr is a pipe (a log, a test, systemd), a line is not wrapped at 80 columns:
    `grep` finds the whole summary."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edge_runtime.cli", "infer", "--model", str(trained[3]),
           "--data", str(digits_path), "--limit", "5"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("5 samples:")]
    assert "accuracy" in line and "p99" in line, out.stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/PID/maps")
def test_ctrl_c_while_onnxruntime_imports_is_an_interruption(
    trained, digits_path, tmp_path
) -> None:
    """SIGINT as soon as onnxruntime's extension is mapped: exit 130 with the interrupted
    line, not "failed: ImportError: initialization failed"."""
    import signal
    import subprocess
    import sys
    import time

    err = tmp_path / "err"
    cmd = [sys.executable, "-m", "edge_runtime.cli", "infer", "--model", str(trained[3]),
           "--data", str(digits_path)]  # fmt: skip
    with err.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if "onnxruntime" in Path(f"/proc/{proc.pid}/maps").read_text():
                    break
            except OSError:  # gone already
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    text = err.read_text()
    assert proc.returncode == 130, text[-2000:]
    assert "ImportError" not in text and "Traceback" not in text, text[-2000:]
    assert text.strip().splitlines()[-1].startswith("edge-runtime: interrupted"), text[-2000:]


def test_the_boards_own_half_is_named(tmp_path) -> None:
    """`edge-runtime run --model-out` writes edge.onnx + edge.json, not a model directory:
    inference given it says which directory it wants."""
    from edge_runtime.infer.model_dir import ModelDirError, read_model_dir

    (tmp_path / "edge.json").write_text("{}")
    with pytest.raises(ModelDirError, match="holds the board's half") as err:
        read_model_dir(tmp_path)
    assert "--model-out of hostctl serve, demo or bench" in str(err.value)
