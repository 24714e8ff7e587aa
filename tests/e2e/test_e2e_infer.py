"""Hierarchical inference with real processes: `hostctl serve --infer` and `edge-runtime infer`
over TCP and over a pty pair, on a model a real run wrote; bad input is one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_harness import ENV, run_edge, start_cloud

from host.linkemu.null_modem import NullModem


@pytest.fixture(scope="module")
def model_dir(exported, digits_path, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("infer-e2e")
    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    cloud = start_cloud(bundle, tmp, "--model-out", str(tmp / "model"))
    run_edge(bundle, cloud.url, tmp, "--data", str(digits_path), "--epochs", "2")
    cloud.finish()
    return tmp / "model"


def _serve_infer(model_dir: Path, tmp: Path, *where: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "host.cli", "serve", "--infer", "--model", str(model_dir),
           *where, "--exit-when-done"]  # fmt: skip
    with open(tmp / "infer-host.log", "w") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)
    line = proc.stdout.readline()
    assert line.startswith("listening on"), (tmp / "infer-host.log").read_text()
    return proc, line.strip().rsplit(" ", 1)[-1]


def _edge_infer(model_dir: Path, url: str, data: Path, tmp: Path, *extra: str):
    report = tmp / "infer.json"
    cmd = [sys.executable, "-m", "edge_runtime.cli", "infer", "--model", str(model_dir),
           "--connect", url, "--data", str(data), "--report", str(report), *extra]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    return out, (json.loads(report.read_text()) if out.returncode == 0 else None)


def _check(report: dict, model_dir: Path) -> None:
    desc = json.loads((model_dir / "model.json").read_text())
    (row,) = [r for r in desc["early_exit"] if r["threshold"] == 0.9]
    assert report["samples"] == 360 and sum(report["answers"].values()) == 360
    assert report["answers"]["cloud"] > 0 and not report["degraded"]
    assert abs(report["fraction_at_edge"] - row["fraction_at_edge"]) <= 0.01
    assert abs(report["accuracy"] - row["accuracy"]) <= 0.01


def test_infer_over_tcp(model_dir, digits_path, tmp_path) -> None:
    host_report = tmp_path / "host.json"
    host, where = _serve_infer(
        model_dir, tmp_path, "--listen", "tcp://127.0.0.1:0", "--report", str(host_report)
    )
    url = "socket://" + where.removeprefix("tcp://")
    out, report = _edge_infer(model_dir, url, digits_path, tmp_path, "--threshold", "0.9")
    assert out.returncode == 0, out.stderr[-2000:]
    assert host.wait(60) == 0
    _check(report, model_dir)
    # The host's side of the same run: what its tail answered, for whom, and the bytes.
    figures = json.loads(host_report.read_text())
    assert (figures["mode"], figures["role"]) == ("infer", "cloud")
    assert figures["answered"] == report["answers"]["cloud"]
    (edge,) = figures["edges"]
    assert edge["answered"] == figures["answered"] and edge["bytes_up"] == figures["bytes_up"] > 0


def test_infer_over_a_pty_pair(model_dir, digits_path, tmp_path) -> None:
    with NullModem() as modem:
        host, _ = _serve_infer(model_dir, tmp_path, "--serial", modem.paths[1], "--baud", "3000000")
        out, report = _edge_infer(
            model_dir, modem.paths[0], digits_path, tmp_path, "--threshold", "0.9",
            "--baud", "3000000",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        host.terminate()
        host.wait(60)
    _check(report, model_dir)


def test_bad_input_is_one_line(model_dir, digits_path, tmp_path) -> None:
    cases = [
        (model_dir, ["--threshold", "1.5"], 2, "--threshold 1.5: must be between 0 and 1"),
        (model_dir, ["--data", "synthetic:100"], 2, "is 3x32x32 but the model takes 1x8x8"),
        (model_dir, ["--burst", "4:10:20"], 2, "--burst needs --rate"),
        (model_dir, ["--rate", "5", "--burst", "4"], 2, "--burst 4: give FACTOR:START:COUNT"),
        (model_dir, ["--threshold", "0.9", "--calibration-samples", "50"], 2, "only goes with"),
        (model_dir, ["--target-accuracy", "0.9", "--calibration-samples", "360"], 2, "need 1..359"),
    ]
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    # The board answers from edge.onnx (tail.onnx may stay on the host; see test_infer.py).
    (broken / "edge.onnx").unlink()
    cases.append((broken, [], 1, "edge.onnx is missing"))
    for directory, extra, code, text in cases:
        args = [sys.executable, "-m", "edge_runtime.cli", "infer", "--model", str(directory),
                "--data", str(digits_path), *extra]  # fmt: skip
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=ENV)
        assert out.returncode == code, out.stderr
        assert text in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_labels_the_model_cannot_answer_are_one_line(model_dir, tmp_path) -> None:
    """Data labelled 1..10 for a 10-class model (or with any label past its classes): exit 2
    naming the labels. It answered every sample and reported an accuracy against labels the
    model can never give (0.0% for sparse ids), as if the model were wrong."""
    import numpy as np

    data = tmp_path / "one-based.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 17, (40, 8, 8), dtype=np.uint8), y=np.arange(40) % 10 + 1)
    args = [sys.executable, "-m", "edge_runtime.cli", "infer", "--model", str(model_dir),
            "--data", str(data)]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=ENV)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        "edge-runtime: error: data npz:one-based.npz has labels 1..10 but the model answers "
        "classes 0..9: give the labels it was trained with (map them to 0..9)"
    ), out.stderr


def test_a_folder_without_one_class_keeps_the_trained_labels(
    model_dir, digits_path, tmp_path
) -> None:
    """Test images as a folder of class folders that lacks one class (no "3"): folder:DIR
    numbers the classes it finds, so "4".."9" read as 3..8 and were scored against the wrong
    classes. Labels follow model.json's class names: the same images, answered at the board
    (no host), score as an npz of them with their true labels does."""
    import numpy as np
    from PIL import Image

    from edge_runtime.data import load_dataset

    digits = load_dataset(str(digits_path))
    folder, xs, ys = tmp_path / "photos", [], []
    for i, (image, label) in enumerate(zip(digits.x_test[:, 0], digits.y_test, strict=True)):
        if label == 3:
            continue
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i:03d}.png")
    for label in sorted(p.name for p in folder.iterdir()):  # folder:DIR's own order
        for file in sorted((folder / label).iterdir()):
            xs.append(np.asarray(Image.open(file)))
            ys.append(int(label))
    np.savez(tmp_path / "same.npz", x=np.stack(xs), y=np.array(ys))
    reports = []
    for data in (f"folder:{folder}", str(tmp_path / "same.npz")):
        report = tmp_path / "r.json"
        args = [sys.executable, "-m", "edge_runtime.cli", "infer", "--model", str(model_dir),
                "--data", data, "--report", str(report)]  # fmt: skip
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=ENV)
        assert out.returncode == 0, out.stderr
        reports.append(json.loads(report.read_text()))
    assert reports[0]["samples"] == reports[1]["samples"] > 0
    assert reports[1]["accuracy"] > 0.5  # the trained model on its own test images
    assert reports[0]["accuracy"] == reports[1]["accuracy"]


def test_a_port_in_use_is_one_line(model_dir, exported, tmp_path) -> None:
    """Both hosts (training and inference) on a port another socket holds: exit 1, one line
    naming the address and what to do (it was "[Errno 98] Address already in use")."""
    import socket

    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        url = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        for role in (["--infer", "--model", str(model_dir)], ["--bundle", str(bundle)]):
            cmd = [sys.executable, "-m", "host.cli", "serve", *role, "--listen", url,
                   "--state-dir", str(tmp_path / "state")]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
            assert out.returncode == 1, out.stderr
            assert "Traceback" not in out.stderr
            last = out.stderr.strip().splitlines()[-1]
            assert last.startswith(
                f"hostctl: failed: cannot listen on {url}: address already in use; something "
                "already listens there"
            ), last


def test_serve_infer_names_a_wrong_model_dir(exported) -> None:
    """A bundle given as --model (they look alike) is "not a model directory", not "key file
    ... link.key does not exist"; no --model at all does not speak of --bundle."""
    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8), lr=3e-3)
    cases = [
        (["--model", str(bundle)], 1, f"{bundle}: no model.json; not a model directory"),
        ([], 2, "serve --infer takes --model DIR (the --model-out of a run), which is missing"),
    ]
    for extra, code, says in cases:
        cmd = [sys.executable, "-m", "host.cli", "serve", "--infer", *extra, "--listen",
               "tcp://127.0.0.1:0"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
        assert out.returncode == code, out.stderr
        assert out.stderr.strip().splitlines() == [
            f"hostctl: {'failed' if code == 1 else 'error'}: {says}"
        ]
