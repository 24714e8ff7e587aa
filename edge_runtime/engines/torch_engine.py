"""The `torch` engine: the same front + exit head in PyTorch, for boards without an
onnxruntime-training wheel (aarch64). Rebuilt by `models.rebuild` from the model description
and .npz weights in the bundle; nothing pickled is loaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import EDGE_WEIGHTS, Bundle
from edge_runtime.engines.base import Engine, EngineError, StepResult
from models import EdgeNet, ManifestError, ModelSpecError, build_optimizer, rebuild, train_step


def build_edge_net(bundle: Bundle) -> EdgeNet:
    """Front + exit head from the manifest's model description, weights from the bundle's edge/.

    `bundle` is the edge half or the whole bundle.
    """
    edge = bundle.side_dir("edge")
    try:
        return rebuild.edge_net(bundle.manifest, edge, edge / EDGE_WEIGHTS)
    except (ManifestError, ModelSpecError) as exc:
        raise EngineError(str(exc)) from None


class TorchEngine(Engine):
    """Front + exit head trained with torch on the CPU."""

    name = "torch"

    def __init__(
        self, bundle: Bundle, *, threads: int | None = None, variant: str = "train"
    ) -> None:
        # One torch network serves both variants: split learning uses split_forward/backward.
        if variant not in ("train", "split"):
            raise EngineError(f"the torch engine has no {variant!r} variant")
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self._net = build_edge_net(bundle)
        self._input_shape = tuple(bundle.manifest["input_shape"])
        self.optimizer_config = bundle.manifest["edge"]["optimizer"]
        try:
            self._optimizer = build_optimizer(self._net.parameters(), self.optimizer_config)
        except ManifestError as exc:
            raise EngineError(str(exc)) from None
        self._loss = nn.CrossEntropyLoss()

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        step = train_step(self._net, self._optimizer, x, y)
        logits, activation = step.outputs
        return StepResult(step.loss, logits.numpy(), activation.numpy())

    @torch.no_grad()
    def eval_step(self, x: np.ndarray, y: np.ndarray | None = None) -> StepResult:
        self._net.eval()
        logits, activation = self._net(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        loss = float("nan") if y is None else float(self._loss(logits, torch.from_numpy(y)))
        return StepResult(loss, logits.numpy(), activation.numpy())

    def save_checkpoint(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"net": self._net.state_dict(), "opt": self._optimizer.state_dict()}, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        if not Path(path).is_file():
            raise EngineError(f"checkpoint {path} does not exist")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        self._net.load_state_dict(saved["net"])
        self._optimizer.load_state_dict(saved["opt"])

    def export_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self._net.state_dict().items()}

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        own = self._net.state_dict()
        if set(weights) != set(own):
            missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
            raise EngineError(
                f"weights do not fit this front: missing {missing[:3]}, unknown {extra[:3]}"
            )
        with torch.no_grad():
            for name, value in weights.items():
                if tuple(own[name].shape) != value.shape:
                    raise EngineError(
                        f"weight {name!r} has shape {value.shape}, expected {tuple(own[name].shape)}"
                    )
                own[name].copy_(torch.from_numpy(np.array(value, order="C")))  # 0-d stays 0-d

    def export_inference(self, path: Path) -> None:
        # The same graph contract as the ort engine's export: input -> logits, activation.
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        training = self._net.training
        self._net.eval()
        try:
            sample = torch.zeros(1, *self._input_shape)
            torch.onnx.export(
                self._net,
                (sample,),
                str(tmp),
                input_names=["input"],
                output_names=["logits", "activation"],
                dynamic_axes={n: {0: "batch"} for n in ("input", "logits", "activation")},
                opset_version=17,
                dynamo=False,
            )
        finally:
            self._net.train(training)
        os.replace(tmp, path)

    def set_lr(self, lr: float) -> None:
        for group in self._optimizer.param_groups:
            group["lr"] = lr

    def split_forward(self, x: np.ndarray) -> np.ndarray:
        self._net.train()
        self._pending = self._net.front(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return self._pending.detach().numpy()

    def split_backward(self, grad: np.ndarray) -> None:
        self._optimizer.zero_grad(set_to_none=True)
        self._pending.backward(torch.from_numpy(np.ascontiguousarray(grad, np.float32)))
        self._pending = None
        self._optimizer.step()  # the exit head has no gradient here and is left as it is
