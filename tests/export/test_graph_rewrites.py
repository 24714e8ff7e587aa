"""The export's rewrites of ORT's generated training model (host/export/onnx_artifacts.py,
GRAPH_REWRITES): the same values as the op they replace, and the same training."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edge_runtime.bundle import load_bundle
from edge_runtime.engines import make_engine
from host.export import ExportOptions, export_bundle, onnx_artifacts


def _relu_grad_model(shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("ReluGrad", ["dY", "Y"], ["dX"], name="g", domain="com.microsoft")],
        "relu_grad",
        [
            helper.make_tensor_value_info("dY", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape),
        ],
        [helper.make_tensor_value_info("dX", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    return model


def _run(model: onnx.ModelProto, dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"dY": dy, "Y": y})[0]


def test_relu_grad_as_mul_gives_relu_grads_values() -> None:
    shape = [4, 3, 5, 5]
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(shape, dtype=np.float32)
    # A ReLU's output: zeros (a third of them), positives, denormals and huge values.
    y = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
    y.flat[:4] = [1e-45, 3e38, 0.0, 1e-30]
    dy.flat[4:8] = [1e-45, -1e-45, 3e38, -0.0]
    original = _relu_grad_model(shape)
    rewritten = _relu_grad_model(shape)
    assert onnx_artifacts._relu_grad_as_mul(rewritten) == 1
    assert [n.op_type for n in rewritten.graph.node] == ["Constant", "Greater", "Cast", "Mul"]
    onnx.checker.check_model(rewritten)
    np.testing.assert_array_equal(_run(rewritten, dy, y), _run(original, dy, y))
    np.testing.assert_array_equal(_run(rewritten, dy, y), np.where(y > 0, dy, 0))


@pytest.fixture
def bundles(tmp_path, monkeypatch):
    """smallcnn split 3 exported twice: with our rewrites, and as generate_artifacts wrote it."""
    options = {"model": "smallcnn", "split": 3, "input_shape": (3, 16, 16), "validate": False}
    ours = tmp_path / "ours"
    export_bundle(ExportOptions(**options, baselines=True), ours)
    monkeypatch.setattr(onnx_artifacts, "GRAPH_REWRITES", {})
    theirs = tmp_path / "theirs"
    export_bundle(ExportOptions(**options, baselines=True), theirs)
    return ours, theirs


def test_exported_training_models_hold_no_relu_grad_and_train_the_same(bundles) -> None:
    ours, theirs = bundles
    for variant in ("", "split/"):
        ops = {
            n.op_type
            for n in onnx.load(str(ours / f"edge/{variant}training_model.onnx")).graph.node
        }
        before = {
            n.op_type
            for n in onnx.load(str(theirs / f"edge/{variant}training_model.onnx")).graph.node
        }
        assert "ReluGrad" in before and "ReluGrad" not in ops
        assert {"Greater", "Cast", "Mul"} <= ops
    rng = np.random.default_rng(1)
    engines = [make_engine("ort", load_bundle(b), threads=1) for b in (ours, theirs)]
    for _ in range(3):
        x = rng.standard_normal((8, 3, 16, 16), dtype=np.float32)
        y = rng.integers(0, 10, 8)
        a, b = (engine.train_step(x, y) for engine in engines)
        assert a.loss == b.loss
        np.testing.assert_array_equal(a.activation, b.activation)
    w_ours, w_theirs = (engine.export_weights() for engine in engines)
    assert w_ours.keys() == w_theirs.keys()
    for name in w_ours:
        np.testing.assert_array_equal(w_ours[name], w_theirs[name], err_msg=name)
