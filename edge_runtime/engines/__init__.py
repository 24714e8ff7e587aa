"""Engines that train the front on the board, chosen by name: `ort`, `torch` or `auto`.

Engines are looked up by import path so that choosing `ort` never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from edge_runtime.bundle import Bundle
from edge_runtime.engines import ort_import
from edge_runtime.engines.base import Engine, EngineError, StepResult


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


# name -> (module, class, what it needs, availability check that imports nothing heavy)
ENGINES: dict[str, tuple[str, str, str, Callable[[], bool]]] = {
    "ort": (
        "edge_runtime.engines.ort_engine",
        "OrtEngine",
        "onnxruntime-training",
        ort_import.available,
    ),
    "torch": ("edge_runtime.engines.torch_engine", "TorchEngine", "torch", _torch_available),
}
ENGINE_CHOICES = ("auto", *ENGINES)


def resolve_engine_name(kind: str) -> str:
    """`auto` -> `ort` when onnxruntime-training is importable, else `torch`."""
    if kind == "auto":
        for name, (_, _, _, is_available) in ENGINES.items():
            if is_available():
                return name
        raise EngineError(
            "no engine available: install onnxruntime-training (x86_64, Python 3.11) "
            "or torch (any board) — `pip install hiertrain[edge]` or `hiertrain[edge-torch]`"
        )
    if kind not in ENGINES:
        raise EngineError(f"unknown engine {kind!r}: use one of {', '.join(ENGINE_CHOICES)}")
    return kind


def make_engine(
    kind: str, bundle: Bundle, *, threads: int | None = None, variant: str = "train"
) -> Engine:
    """Create the engine `kind` (auto, ort, torch) over the edge side of `bundle`.

    `variant` is the mode's (`ModeSpec.engine_variant`): "train" trains front + exit on the
    exit's loss; "split" runs the front for split learning (ort: the edge/split/ artifacts).
    """
    supported = bundle.manifest.get("engines", list(ENGINES))
    if kind == "auto" and "ort" not in supported:
        kind = "torch"  # exported with --engine torch: there is nothing for ort to load
    name = resolve_engine_name(kind)
    if name not in supported:
        raise EngineError(
            f"this bundle was exported with --engine {supported[0]} and has no {name} "
            f"artifacts: run with --engine {supported[0]}, or re-export it without --engine"
        )
    module_name, cls_name, needs, is_available = ENGINES[name]
    if not is_available():
        raise EngineError(f"engine {name!r} needs {needs}, which is not installed on this board")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(bundle, threads=threads, variant=variant)


__all__ = [
    "ENGINE_CHOICES",
    "Engine",
    "EngineError",
    "StepResult",
    "make_engine",
    "resolve_engine_name",
]
