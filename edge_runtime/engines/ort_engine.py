"""The `ort` engine: ONNX Runtime on-device training over the exported artifacts.

Imports neither torch nor onnx: the board needs onnxruntime-training and numpy only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_runtime.bundle import (
    CHECKPOINT,
    EVAL_MODEL,
    OPTIMIZER_MODEL,
    TRAINING_MODEL,
    Bundle,
)
from edge_runtime.engines.base import Engine, EngineError, StepResult
from edge_runtime.engines.ort_import import describe, training_api


def session_options(threads: int | None):  # -> onnxruntime.SessionOptions
    """Options that matter on a small board: all cores, all graph optimisations, and idle
    intra-op workers that sleep instead of spinning.

    Spinning off: the edge runtime's own threads (the link's sender coding activations, its
    receiver, the spool) share the cores with ORT's pool, and spinning workers take CPU from
    them. Measured side by side (benchmarks/bench_ort_speed.py, docs/results.md "ORT engine
    speed"): a 2-thread ResNet-18 step took 0.79 of the wall time and 0.62 of the CPU time with
    spinning off, on 2 cores with other work beside it.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OrtEngine(Engine):
    """Front + exit head trained by onnxruntime.training.api (Module, Optimizer, CheckpointState)."""

    name = "ort"

    def __init__(
        self, bundle: Bundle, *, threads: int | None = None, variant: str = "train"
    ) -> None:
        """`variant="split"` opens the split-learning artifacts (edge/split/) instead.

        `bundle` is the edge half or the whole bundle: the artifacts are read from its edge/.
        """
        api = training_api()
        # Which ORT this is (1.19.2 from PyPI, 1.21.0 from the aarch64 wheel): for reports.
        self.runtime = describe()
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        self._api = api
        self._edge_dir = bundle.side_dir("edge")
        self._threads = threads
        edge = bundle.manifest["edge"]
        variant = "" if variant == "train" else variant
        self._split = bool(variant)  # the front alone, without the exit head
        self._dir = self._edge_dir / variant if variant else self._edge_dir
        if variant and not self._dir.is_dir():
            raise EngineError(f"the bundle has no {variant} artifacts: export with --baselines")
        key = f"{variant}_bn_updates" if variant else "bn_updates"
        self._bn_updates = [tuple(p) for p in edge.get(key, [])]
        self._act_shape = tuple(bundle.manifest["activation"]["shape"])
        self.optimizer_config = edge["optimizer"]
        self._lr = float(edge["optimizer"]["lr"])
        self._open(self._dir / CHECKPOINT)

    def _open(self, checkpoint: Path) -> None:
        CheckpointState, Module, Optimizer = (  # noqa: N806 - ORT's class names
            self._api.CheckpointState,
            self._api.Module,
            self._api.Optimizer,
        )
        try:
            self._state = CheckpointState.load_checkpoint(str(checkpoint))
            self._module = Module(
                str(self._dir / TRAINING_MODEL),
                self._state,
                str(self._dir / EVAL_MODEL),
                device="cpu",
                session_options=session_options(self._threads),
            )
            self._optimizer = Optimizer(str(self._edge_dir / OPTIMIZER_MODEL), self._module)
        except RuntimeError as exc:  # ORT raises RuntimeError subclasses for bad files
            raise EngineError(f"onnxruntime could not load the edge artifacts: {exc}") from exc
        self._optimizer.set_learning_rate(self._lr)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._module.train()
        outputs = self._module(
            np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int64)
        )
        self._optimizer.step()
        self._module.lazy_reset_grad()
        # BatchNorm running statistics come out as extra outputs; ORT would drop them otherwise.
        for (param, _), value in zip(self._bn_updates, outputs[3:], strict=True):
            self._state.parameters[param].data = value
        return StepResult(float(outputs[0]), outputs[1], outputs[2])

    def eval_step(self, x: np.ndarray, y: np.ndarray | None = None) -> StepResult:
        self._module.eval()
        x = np.ascontiguousarray(x, np.float32)
        if self._split:  # split learning: the front alone, no exit head
            zeros = np.zeros((len(x), *self._act_shape), np.float32)
            activation = self._module(x, zeros)[1]
            return StepResult(float("nan"), np.zeros((len(x), 0), np.float32), activation)
        labels = np.zeros(len(x), np.int64) if y is None else np.ascontiguousarray(y, np.int64)
        loss, logits, activation = self._module(x, labels)[:3]
        return StepResult(float("nan") if y is None else float(loss), logits, activation)

    def save_checkpoint(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        self._api.CheckpointState.save_checkpoint(
            self._state, str(tmp), include_optimizer_state=True
        )
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        if not Path(path).is_file():
            raise EngineError(f"checkpoint {path} does not exist")
        self._open(Path(path))

    def export_weights(self) -> dict[str, np.ndarray]:
        return {name: np.array(param.data) for name, param in self._state.parameters}

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        # The Module trains on the CheckpointState's own buffers: copying into them
        # (CheckpointState.copy_parameter_from, ORT's API for this) is all it takes, no torch.
        params = self._state.parameters
        names = {name for name, _ in params}
        if set(weights) != names:
            raise EngineError(_mismatch(names, set(weights)))
        for name, value in weights.items():
            current = params[name].data
            if current.shape != value.shape:
                raise EngineError(
                    f"weight {name!r} has shape {value.shape}, expected {current.shape}"
                )
            params[name] = np.array(value, dtype=current.dtype, order="C")

    def export_inference(self, path: Path) -> None:
        # ORT prunes the eval graph to these outputs (the loss and the labels input go) and
        # writes the state's current weights: no torch and no onnx on the board.
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            self._module.export_model_for_inferencing(str(tmp), ["logits", "activation"])
        except RuntimeError as exc:
            raise EngineError(f"onnxruntime could not export the edge model: {exc}") from exc
        os.replace(tmp, path)

    def set_lr(self, lr: float) -> None:
        self._lr = lr
        self._optimizer.set_learning_rate(lr)

    def split_forward(self, x: np.ndarray) -> np.ndarray:
        # The on-device API runs forward and backward in one call, so split learning costs two
        # forward passes here: this one (with a zero upstream gradient, which adds nothing to
        # the accumulated gradients) yields the activation to send.
        if not self._split:
            raise EngineError("this engine was opened for hierarchical training, not split")
        self._module.train()
        self._x = np.ascontiguousarray(x, np.float32)
        zeros = np.zeros((len(x), *self._act_shape), np.float32)
        return self._module(self._x, zeros)[1]

    def split_backward(self, grad: np.ndarray) -> None:
        outputs = self._module(self._x, np.ascontiguousarray(grad, np.float32))
        self._optimizer.step()
        self._module.lazy_reset_grad()
        for (param, _), value in zip(self._bn_updates, outputs[2:], strict=True):
            self._state.parameters[param].data = value


def _mismatch(have: set[str], given: set[str]) -> str:
    """One line naming what a weights dict lacks and what it has that the front has not."""
    missing, extra = sorted(have - given), sorted(given - have)
    return f"weights do not fit this front: missing {missing[:3]}, unknown {extra[:3]}"
