"""The trained model out: after a real run (real ONNX Runtime sessions on both the edge's engine
and the written files, the real link protocol over a socket pair) the model directory answers
as the run said it would, and checking catches a file that is not what model.pt holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from edge_runtime.bundle import load_bundle, sha256_file
from edge_runtime.data import load_dataset
from edge_runtime.engines import make_engine
from edge_runtime.train.loop import CHECKPOINT
from host.cli import cli
from host.model.assemble import ModelParts, write_model
from host.model.collect import (
    parts_from_checkpoints,
    parts_from_state,
)
from host.model.validate import ModelCheckFailed, validate_model_dir

EPOCHS = 2


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_full_and_edge_onnx_give_the_runs_accuracies(trained, digits_path) -> None:
    _, edge, host, out, _, lines, _ = trained
    data = load_dataset(str(digits_path), seed=0)
    x, y = data.normalise(data.x_test), data.y_test
    logits, exit_logits = _run(out / "full.onnx", x)
    final = float((logits.argmax(1) == y).mean())
    exit_acc = float((_run(out / "edge.onnx", x)[0].argmax(1) == y).mean())
    assert host["final_accuracy"] > 0.5  # it learned: the comparison means something
    assert abs(final - host["final_accuracy"]) <= 0.005, (final, host["final_accuracy"])
    assert abs(exit_acc - edge["edge_exit_accuracy"]) <= 0.005
    assert np.array_equal(exit_logits.argmax(1), _run(out / "edge.onnx", x)[0].argmax(1))
    # tail.onnx on edge.onnx's activation is full.onnx
    activation = _run(out / "edge.onnx", x)[1]
    assert np.allclose(_run(out / "tail.onnx", activation)[0], logits, atol=1e-4)
    assert [line[0] for line in lines[:3]] == ["✓", "✓", "✓"]
    # The weights went up as messages and were counted in the bytes.
    assert edge["model_parts_sent"] >= 1 and edge["bytes_up"] > 0


def test_model_json_describes_the_run(trained, digits_path) -> None:
    _, edge, host, out, _, _, _ = trained
    data = load_dataset(str(digits_path), seed=0)
    desc = json.loads((out / "model.json").read_text())
    assert desc["model"] == "smallcnn" and desc["split"] == 2
    assert desc["input_shape"] == [1, 8, 8] and len(desc["classes"]) == 10
    assert np.allclose(desc["normalisation"]["mean"], data.mean)
    assert np.allclose(desc["normalisation"]["std"], data.std)
    assert desc["final_accuracy"] == host["final_accuracy"]
    assert desc["early_exit"] and desc["early_exit"][0]["threshold"] == 0.5
    assert desc["trained_epochs"] == EPOCHS
    for name, digest in desc["files"].items():
        assert sha256_file(out / name) == digest
    saved = torch.load(out / "model.pt", weights_only=True)
    assert (
        saved["split"] == 2
        and saved["model_spec"] == load_bundle(trained[0]).manifest["model_spec"]
    )
    assert {k.split(".")[0] for k in saved["edge"]} == {"front", "exit_head"}


def test_checkpoints_give_the_same_model(trained) -> None:
    bundle_dir, _, _, _, tmp, _, state = trained
    bundle = load_bundle(bundle_dir)
    live = parts_from_state(bundle, state)
    saved = parts_from_checkpoints(bundle, tmp / "edge" / CHECKPOINT, tmp / "host")
    assert set(saved.edge_weights) == set(live.edge_weights)
    for k, v in live.edge_weights.items():
        assert np.array_equal(np.asarray(saved.edge_weights[k]), v), k
    for k, v in live.tail_weights.items():
        assert torch.equal(torch.as_tensor(saved.tail_weights[k]), v), k
    assert saved.meta["normalisation"] == live.meta["normalisation"]


def test_validation_catches_a_mismatched_weight_file(trained, tmp_path) -> None:
    bundle_dir, _, _, out, _, _, state = trained
    bundle = load_bundle(bundle_dir)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # Another tail's ONNX file under this model's name, with model.json's hash made to match:
    # only comparing against model.pt's weights can tell.
    fresh = bundle_dir / "cloud"
    other = ModelParts(
        bundle.manifest,
        fresh,
        parts_from_state(bundle, state).edge_weights,
        {k: v * 0.5 for k, v in state.trainer.tail.state_dict().items()},
    )
    write_model(other, tmp_path / "other")
    shutil.copy(tmp_path / "other" / "tail.onnx", copy / "tail.onnx")
    desc = json.loads((copy / "model.json").read_text())
    desc["files"]["tail.onnx"] = sha256_file(copy / "tail.onnx")
    (copy / "model.json").write_text(json.dumps(desc))
    lines: list[str] = []
    with pytest.raises(ModelCheckFailed, match="tail.onnx disagree"):
        validate_model_dir(copy, say=lines.append)
    assert any(line.startswith("✗ tail.onnx") for line in lines)
    assert any(line.startswith("✓ edge.onnx") for line in lines)


def test_altered_or_missing_file_is_one_line(trained, tmp_path) -> None:
    _, _, _, out, _, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with (copy / "edge.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelCheckFailed, match="edge.onnx was altered"):
        validate_model_dir(copy)
    shutil.copy(out / "edge.onnx", copy / "edge.onnx")
    (copy / "full.onnx").unlink()
    with pytest.raises(ModelCheckFailed, match="full.onnx is missing"):
        validate_model_dir(copy)


def test_hostctl_model_from_checkpoints(trained, tmp_path, digits_path) -> None:
    bundle_dir, _, _, out, tmp, _, _ = trained
    args = [
        "model",
        "--bundle",
        str(bundle_dir),
        "--edge-checkpoint",
        str(tmp / "edge" / CHECKPOINT),
        "--host-state",
        str(tmp / "host"),
        "--out",
        str(tmp_path / "m"),
        "--data",
        str(digits_path),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == 3
    ref = torch.load(out / "model.pt", weights_only=True)
    got = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    for half in ("edge", "tail"):
        assert all(torch.equal(ref[half][k], got[half][k]) for k in ref[half])
    bad = CliRunner().invoke(cli, [*args[:4], str(tmp / "nope.ckpt"), *args[5:]])
    assert bad.exit_code == 1 and "does not exist" in bad.output
    assert "Traceback" not in bad.output


def test_hostctl_model_wrong_inputs_are_one_line(trained, tmp_path) -> None:
    """What a user gets wrong, each one line naming it: a file that is no engine checkpoint
    (progress.json beside it), a --host-state that does not exist, --data of another shape."""
    bundle_dir, _, _, _, tmp, _, _ = trained
    base = ["model", "--bundle", str(bundle_dir), "--out", str(tmp_path / "m")]
    ckpt, state = (
        ["--edge-checkpoint", str(tmp / "edge" / CHECKPOINT)],
        ["--host-state", str(tmp / "host")],
    )
    cases = [
        (["--edge-checkpoint", str(tmp / "edge" / "progress.json"), *state], 1,
         "neither a torch nor an ORT engine checkpoint"),
        ([*ckpt, "--host-state", str(tmp_path / "nothere")], 1, "is not a directory"),
        ([*ckpt, *state, "--data", "synthetic:40"], 2, "its samples are 3x32x32, the model takes 1x8x8"),
    ]  # fmt: skip
    for extra, code, words in cases:
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == code, result.output
        assert words in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "m").exists()


def _first_batch_loss(bundle_dir: Path, digits_path: Path) -> float:
    from edge_runtime.data import batches

    data = load_dataset(str(digits_path), seed=0)
    _, x, y = next(iter(batches(data, "train", 32, epoch=0, seed=0)))
    engine = make_engine("ort", load_bundle(bundle_dir / "edge"), threads=1)
    return engine.train_step(x, y).loss


def test_export_weights_starts_from_them(trained, tmp_path, digits_path) -> None:
    from host.cloud.tail import TailTrainer
    from host.export import ExportOptions, export_bundle

    _, _, host, out, _, _, _ = trained
    opts = dict(model="smallcnn", split=2, input_shape=(1, 8, 8), lr=3e-3)
    export_bundle(ExportOptions(**opts), tmp_path / "fresh")
    export_bundle(ExportOptions(**opts, weights=out / "model.pt"), tmp_path / "warm")
    fresh = _first_batch_loss(tmp_path / "fresh", digits_path)
    warm = _first_batch_loss(tmp_path / "warm", digits_path)
    assert warm < 0.5 * fresh, (warm, fresh)
    # The tail starts trained too: the run's final accuracy on its test split, from the bundle.
    data = load_dataset(str(digits_path), seed=0)
    edge_out = _run(out / "edge.onnx", data.normalise(data.x_test))[1]
    tail = TailTrainer(load_bundle(tmp_path / "warm" / "cloud"))
    accuracy = float((tail.predict(edge_out) == data.y_test).mean())
    assert abs(accuracy - host["final_accuracy"]) <= 0.005
    # A whole-model state dict (block names, no exit head) loads its front and tail.
    saved = torch.load(out / "model.pt", weights_only=True)
    whole = {
        k.removeprefix("front."): v for k, v in saved["edge"].items() if k.startswith("front.")
    }
    whole.update(saved["tail"])
    torch.save(whole, tmp_path / "whole.pt")
    export_bundle(ExportOptions(**opts, weights=tmp_path / "whole.pt"), tmp_path / "whole")
    tail = TailTrainer(load_bundle(tmp_path / "whole" / "cloud"))
    assert abs(float((tail.predict(edge_out) == data.y_test).mean()) - accuracy) <= 0.005


def test_export_weights_of_another_split(trained, tmp_path, digits_path) -> None:
    """model.pt of the split-2 run, exported at splits 1 and 3: the same network cut
    elsewhere (it failed: "unexpected [front.conv3...]"), so the whole model's answers are the
    run's, while the exit head, made for another cut, starts fresh."""
    from host.export import ExportOptions, export_bundle

    out = trained[3]
    data = load_dataset(str(digits_path), seed=0)
    x = data.normalise(data.x_test)
    (expected,) = _run(out / "full.onnx", x)[:1]
    for split in (1, 3):
        bundle = tmp_path / f"split{split}"
        opts = ExportOptions(
            model="smallcnn", split=split, input_shape=(1, 8, 8), weights=out / "model.pt"
        )
        export_bundle(opts, bundle)
        _, activation = _run(bundle / "edge" / "inference_model.onnx", x)
        (logits,) = _run(bundle / "cloud" / "tail_model.onnx", activation)
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_export_weights_bad_file_is_one_line(tmp_path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole-model.pt")  # a module, not its weights
    for name, expected in (
        ("junk.pt", "not a file torch.save wrote"),
        ("other.pt", "do not fit"),
        ("whole-model.pt", "save model.state_dict() instead"),
        ("absent.pt", "does not exist"),
    ):
        args = ["export", "--model", "smallcnn", "--split", "2", "--input-shape", "1x8x8"]
        args += ["--out", str(tmp_path / "b"), "--weights", str(tmp_path / name)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert expected in result.output and "Traceback" not in result.output
        assert "ManifestError" not in result.output  # a typed error: no class name to the user
        assert len(result.output.strip().splitlines()) == 1


BOARD_EXPORT = """
import sys
from pathlib import Path
from edge_runtime.bundle import load_bundle
from edge_runtime.engines.ort_engine import OrtEngine
from edge_runtime.model_out import write_edge_model
bundle_dir, checkpoint, out = map(Path, sys.argv[1:4])
engine = OrtEngine(load_bundle(bundle_dir / "edge"), threads=1)
engine.load_checkpoint(checkpoint)
write_edge_model(engine, {"input_shape": [1, 8, 8]}, {"model": "smallcnn"}, out)
assert "torch" not in sys.modules and "onnx" not in sys.modules, "the board imported torch/onnx"
"""


def test_board_exports_its_half_without_torch(trained, tmp_path, digits_path) -> None:
    import subprocess
    import sys

    bundle_dir, _, _, out, tmp, _, _ = trained
    board = tmp_path / "board"
    subprocess.run(
        [
            sys.executable,
            "-c",
            BOARD_EXPORT,
            str(bundle_dir),
            str(tmp / "edge" / CHECKPOINT),
            str(board),
        ],
        check=True,
        timeout=300,
    )
    desc = json.loads((board / "edge.json").read_text())
    assert desc["files"]["edge.onnx"] == sha256_file(board / "edge.onnx")
    data = load_dataset(str(digits_path), seed=0)
    x = data.normalise(data.x_test[:64])
    session = ort.InferenceSession(str(board / "edge.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == desc["io"]["edge.onnx"]["inputs"]
    got = session.run(desc["io"]["edge.onnx"]["outputs"], {"input": x})
    want = _run(out / "edge.onnx", x)
    for g, w in zip(got, want, strict=True):
        assert np.allclose(g, w, atol=1e-4), float(np.abs(g - w).max())
