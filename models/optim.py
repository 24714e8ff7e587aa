"""The optimizers a bundle manifest names, in the form the ORT artifacts' optimizer has."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from models.errors import ManifestError


class OrtStyleAdamW(torch.optim.Optimizer):
    """AdamW as ORT's onnxblock builds it (`adam_mode=1`, the HF-transformers form).

    It differs from torch.optim.AdamW in where epsilon goes: `m / (sqrt(v) + eps)` scaled by
    `lr * sqrt(1 - b2^t) / (1 - b1^t)`, and decay `w -= lr * wd * w` after the update. Using the
    same form keeps the two engines' weights together (tests/engines: parity over 5 steps).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 - torch's signature
        """One update of every parameter that has a gradient."""
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


def build_optimizer(
    params: Iterable[torch.nn.Parameter], config: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """The optimizer a manifest's `{"type", "lr", "weight_decay"}` names (ManifestError if unknown)."""
    if config["type"] == "adamw":
        return OrtStyleAdamW(params, lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))
    if config["type"] == "sgd":
        return torch.optim.SGD(params, lr=config["lr"])
    raise ManifestError(f"unknown optimizer {config['type']!r} in the manifest: adamw or sgd")
