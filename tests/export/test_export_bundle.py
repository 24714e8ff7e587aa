"""hostctl export: real ONNX Runtime sessions over every zoo model at two split points."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.engines import make_engine
from host.export.bundle_writer import EDGE_WEIGHTS, TAIL_WEIGHTS
from models import EdgeNet, build_exit_head, build_model

CASES = [
    ("smallcnn", 1, (3, 32, 32)),
    ("smallcnn", 3, (1, 8, 8)),
    ("resnet18", 2, (3, 32, 32)),
    ("resnet18", 6, (3, 32, 32)),
    ("vgg16", 3, (3, 32, 32)),
    ("vgg16", 9, (3, 32, 32)),
]


def _torch_edge_net(bundle) -> EdgeNet:
    m = bundle.manifest
    model = build_model(m["model_spec"])
    head = build_exit_head(tuple(m["activation"]["shape"]), m["num_classes"])
    net = EdgeNet(model.front(m["split"]), head)
    with np.load(bundle.side_path("edge", EDGE_WEIGHTS)) as w:
        net.load_state_dict({k: torch.from_numpy(w[k]) for k in w.files})
    return net


@pytest.mark.parametrize(("model", "split", "shape"), CASES)
def test_exported_artifacts_train_and_agree(exported, model, split, shape) -> None:
    root = exported(model, split, input_shape=shape)
    bundle = load_bundle(root)
    m = bundle.manifest
    for name in (
        "training_model.onnx",
        "eval_model.onnx",
        "optimizer_model.onnx",
        "checkpoint",
        "inference_model.onnx",
        EDGE_WEIGHTS,
        "link.key",
        "manifest.json",
    ):
        assert (root / "edge" / name).is_file(), name
    for name in ("tail_model.onnx", TAIL_WEIGHTS, "link.key", "manifest.json"):
        assert (root / "cloud" / name).is_file(), name
    for name in ("training_model.onnx", "eval_model.onnx", "inference_model.onnx"):
        assert onnx.load(str(root / "edge" / name)).ir_version <= 10

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *shape)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int64)

    # Forward before any update: ORT's training graph equals torch's train-mode forward,
    # and the eval + inference models equal torch's eval-mode forward.
    net = _torch_edge_net(bundle)
    with torch.no_grad():  # eval first: a train-mode forward moves the running statistics
        net.eval()
        e_logits, e_act = net(torch.from_numpy(x))
        net.train()
        t_logits, t_act = net(torch.from_numpy(x))
    engine = make_engine("ort", load_bundle(root / "edge"))
    ev = engine.eval_step(x, y)
    np.testing.assert_allclose(ev.logits, e_logits.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ev.activation, e_act.numpy(), rtol=1e-3, atol=1e-4)
    inf = ort.InferenceSession(str(root / "edge" / "inference_model.onnx"))
    i_logits, i_act = inf.run(["logits", "activation"], {"input": x})
    np.testing.assert_allclose(i_logits, e_logits.numpy(), rtol=1e-3, atol=1e-4)
    assert list(i_act.shape[1:]) == m["activation"]["shape"]

    first = engine.train_step(x, y)
    np.testing.assert_allclose(first.logits, t_logits.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(first.activation, t_act.numpy(), rtol=1e-3, atol=1e-3)
    losses = [first.loss] + [engine.train_step(x, y).loss for _ in range(7)]
    assert losses[-1] < losses[0] * 0.95, losses

    # The cloud's tail model takes the activation and gives class logits.
    tail = ort.InferenceSession(str(root / "cloud" / "tail_model.onnx"))
    (tail_logits,) = tail.run(["logits"], {"input": first.activation})
    assert tail_logits.shape == (8, m["num_classes"])


def test_batchnorm_running_stats_move_and_reach_eval(exported) -> None:
    root = exported("smallcnn", 2)
    engine = make_engine("ort", load_bundle(root / "edge"))
    before = engine.export_weights()
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((16, 3, 32, 32)) * 3 + 2).astype(np.float32)
    y = rng.integers(0, 10, 16)
    eval_before = engine.eval_step(x).logits
    for _ in range(3):
        engine.train_step(x, y)
    after = engine.export_weights()
    stats = [k for k in before if k.endswith("running_mean")]
    assert stats, "smallcnn has BatchNorm"
    for k in stats:
        assert not np.allclose(before[k], after[k]), f"{k} did not move"
    # The eval model reads the updated running statistics from the checkpoint state.
    assert not np.allclose(eval_before, engine.eval_step(x).logits)


def test_manifest_describes_the_split(exported) -> None:
    root = exported("resnet18", 4)
    m = json.loads((root / "manifest.json").read_text())
    assert m["model"] == "resnet18" and m["split"] == 4
    assert m["edge_blocks"] == ["stem", "layer1.0", "layer1.1", "layer2.0"]
    assert m["activation"] == {"shape": [128, 16, 16], "dtype": "float32"}
    assert m["activation_bytes_per_sample"] == 128 * 16 * 16 * 4
    assert m["raw_bytes_per_sample"] == 3 * 32 * 32
    assert m["edge"]["params"] > 0 and m["cloud"]["params"] > m["edge"]["params"]
    assert m["edge"]["flops_per_sample"] > 0 and m["cloud"]["flops_per_sample"] > 0
    assert set(m["versions"]) >= {"torch", "onnx", "onnxruntime-training"}
    assert all(len(h) == 64 for h in m["files"].values())
    # All three copies of the manifest are the same bytes: one sha256 on both ends.
    assert (root / "edge" / "manifest.json").read_bytes() == (root / "manifest.json").read_bytes()
    assert load_bundle(root / "edge").manifest_sha256 == load_bundle(root / "cloud").manifest_sha256


def test_modified_bundle_is_rejected(exported, tmp_path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(exported("smallcnn", 2), copy)
    with open(copy / "edge" / "eval_model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"modified: edge/eval_model\.onnx"):
        load_bundle(copy / "edge")
    load_bundle(copy / "cloud")  # the other side is intact and still loads
    (copy / "cloud" / "tail_weights.npz").unlink()
    with pytest.raises(BundleError, match=r"incomplete: cloud/tail_weights\.npz is missing"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path) -> None:
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text('{"format": "other/9"}')
    with pytest.raises(BundleError, match="format"):
        load_bundle(tmp_path)


USER_MODEL = """
import torch.nn as nn

def factory(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes)),
    )
"""


@pytest.mark.parametrize("engine_kind", ["ort", "torch"])
def test_user_model_from_file_exports_and_trains(exported, tmp_path_factory, engine_kind) -> None:
    src = tmp_path_factory.getbasetemp() / "user_net.py"
    src.write_text(USER_MODEL)
    root = exported(f"{src}:factory", 1, input_shape=(1, 8, 8))
    assert (root / "edge" / "code" / "user_net.py").is_file()
    engine = make_engine(engine_kind, load_bundle(root / "edge"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    losses = [engine.train_step(x, y).loss for _ in range(6)]
    assert losses[-1] < losses[0]


def test_export_keeps_the_initial_running_statistics(exported) -> None:
    """Tracing in training mode must not leave the export sample's statistics in the bundle."""
    root = exported("resnet18", 2)
    in_checkpoint = make_engine("ort", load_bundle(root / "edge")).export_weights()
    with np.load(root / "edge" / EDGE_WEIGHTS) as npz:
        for name in (k for k in npz.files if k.endswith(("running_mean", "running_var"))):
            fresh = 0.0 if name.endswith("mean") else 1.0
            np.testing.assert_array_equal(npz[name], fresh, err_msg=name)
            np.testing.assert_array_equal(in_checkpoint[name], fresh, err_msg=name)


FIXED_CLASSES_MODEL = """
import torch.nn as nn

def factory():  # takes nothing: its 7 classes are fixed, whatever --num-classes says
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(8 * 7 * 7, 7),
    )
"""


def test_factory_without_num_classes_sets_the_class_count(exported, tmp_path_factory) -> None:
    """The model's own class count (read from its output) is the bundle's: the exit head, the
    manifest and the tail agree, although --num-classes kept its default of 10."""
    src = tmp_path_factory.getbasetemp() / "fixed_classes.py"
    src.write_text(FIXED_CLASSES_MODEL)
    root = exported(f"{src}:factory", 2, input_shape=(1, 28, 28))
    bundle = load_bundle(root / "edge")
    assert bundle.manifest["num_classes"] == 7
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    inf = ort.InferenceSession(str(root / "edge" / "inference_model.onnx"))
    exit_logits, activation = inf.run(["logits", "activation"], {"input": x})
    tail = ort.InferenceSession(str(root / "cloud" / "tail_model.onnx"))
    (logits,) = tail.run(["logits"], {tail.get_inputs()[0].name: activation})
    assert exit_logits.shape == logits.shape == (4, 7)
    step = make_engine("ort", bundle).train_step(x, np.array([0, 3, 6, 2]))
    assert np.isfinite(step.loss)
