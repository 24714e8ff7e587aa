"""What a training mode is, declared once: the spec every tool reads instead of the mode's name."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModeSpec:
    """One training mode's declaration.

    `edge_half` is the import path ("module:Class") of its edge half; the host half is
    registered under the same name in `host.cloud.modes` (the board never imports host code).
    """

    name: str
    summary: str
    needs_link: bool
    # Which engine the edge needs: "train" (front + exit with the exit's loss), "split"
    # (forward, then backward from the host's gradient), or None (no engine on the edge).
    engine_variant: str | None
    # Whether the edge's exit head is trained, so that its accuracy means something.
    scores_exit: bool
    # Whether the bundle must carry the whole network's weights (`export --baselines`).
    needs_baselines: bool
    # Whether the edge runs training epochs itself (cloud mode only uploads).
    trains_on_edge: bool
    edge_half: str
    # The edge waits each step for its activation's gradient from the host (split learning, the
    # paper's baseline): the planner models such a run as `split_runtime_s`, and bench divides
    # every run's time by this mode's.
    waits_for_gradient: bool = False
    # Nothing the edge trains depends on what crosses the link, so a lossy codec costs only the
    # host's accuracy: the codec is this mode's own knob, and bench runs it once per --codec
    # (the baselines cross at fp32, as the paper's do).
    codec_is_free: bool = False
    # The edge half applies the activation defences (clipping + noise, the adversarial exit,
    # docs/privacy.md) to what it sends; other modes refuse those options.
    takes_privacy_defences: bool = False

    def edge_class(self) -> Any:
        """The edge half's class, imported on first use."""
        module, cls = self.edge_half.split(":")
        return getattr(importlib.import_module(module), cls)
