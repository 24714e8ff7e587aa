"""The `torch` engine: the same front + exit head in PyTorch, for boards without an
onnxruntime-training wheel (aarch64). Rebuilt from the model description and .npz weights in the
bundle; nothing pickled is loaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.bundle import Bundle
from edge_runtime.engines.base import Engine, EngineError, StepResult

_SPEC_KEYS = {"model", "input_shape", "num_classes", "source", "bundled_source", "factory"}


def split_model_from_manifest(bundle: Bundle):  # -> models.SplitModel
    """Rebuild the split model the manifest describes (a user model from its bundled source)."""
    from models import build_model

    m = bundle.manifest
    spec = m["model_spec"]
    name = m["model"]
    if spec.get("bundled_source"):
        name = f"{bundle.path(spec['bundled_source'])}:{spec['factory']}"
    kwargs = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}
    return build_model(
        name, input_shape=tuple(m["input_shape"]), num_classes=m["num_classes"], **kwargs
    )


def build_edge_net(bundle: Bundle) -> nn.Module:
    """Rebuild front + exit head from the manifest's model description, weights from the bundle."""
    from models import EdgeNet, build_exit_head

    m = bundle.manifest
    model = split_model_from_manifest(bundle)
    head = build_exit_head(
        tuple(m["activation"]["shape"]), m["num_classes"], m["edge"].get("exit_head_width")
    )
    net = EdgeNet(model.front(m["split"]), head)
    with np.load(bundle.path("edge_weights.npz"), allow_pickle=False) as weights:
        state = {k: torch.from_numpy(weights[k].copy()) for k in weights.files}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EngineError(
            f"edge weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return net


class OrtStyleAdamW(torch.optim.Optimizer):
    """AdamW as ORT's onnxblock builds it (`adam_mode=1`, the HF-transformers form).

    It differs from torch.optim.AdamW in where epsilon goes: `m / (sqrt(v) + eps)` scaled by
    `lr * sqrt(1 - b2^t) / (1 - b1^t)`, and decay `w -= lr * wd * w` after the update. Using the
    same form keeps the two engines' weights together (tests/engines: parity over 5 steps).
    """

    def __init__(
        self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002 - torch's signature
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                state["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                step_size = group["lr"] * (1 - b2**t) ** 0.5 / (1 - b1**t)
                p.addcdiv_(state["m"], state["v"].sqrt().add_(group["eps"]), value=-step_size)
                if group["weight_decay"] > 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
        return None


def build_optimizer(params, config: dict) -> torch.optim.Optimizer:
    """The optimizer the manifest names, in the same form as the ORT artifacts' optimizer."""
    if config["type"] == "adamw":
        return OrtStyleAdamW(params, lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))
    if config["type"] == "sgd":
        return torch.optim.SGD(params, lr=config["lr"])
    raise EngineError(f"unknown optimizer {config['type']!r} in the manifest")


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
        self._optimizer = build_optimizer(
            self._net.parameters(), bundle.manifest["edge"]["optimizer"]
        )
        self._loss = nn.CrossEntropyLoss()

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._net.train()
        logits, activation = self._net(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        loss = self._loss(logits, torch.from_numpy(np.ascontiguousarray(y, np.int64)))
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        return StepResult(
            float(loss.detach()), logits.detach().numpy(), activation.detach().numpy()
        )

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
