"""`hostctl plan`: which split trains fastest, from a runtime model of the three-stage pipeline.

`runtime_model` is the arithmetic (no I/O), `profiling` measures step times here, `board_profile`
reads and writes them as JSON, `wire` sizes the messages, `planner` puts them together.

The names below load on first use (PEP 562): `hostctl --help` imports `host.plan.commands`,
which runs this file, and must not pull in torch with the profiler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.plan.board_profile import BoardProfile, ProfileError, load_profile, save_profile
    from host.plan.planner import Plan, PlanRequest, make_plan
    from host.plan.runtime_model import Prediction, RunShape, SplitCosts, predict

_HOMES = {
    "host.plan.board_profile": ("BoardProfile", "ProfileError", "load_profile", "save_profile"),
    "host.plan.planner": ("Plan", "PlanRequest", "make_plan"),
    "host.plan.runtime_model": ("Prediction", "RunShape", "SplitCosts", "predict"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "BoardProfile",
    "Plan",
    "PlanRequest",
    "Prediction",
    "ProfileError",
    "RunShape",
    "SplitCosts",
    "load_profile",
    "make_plan",
    "predict",
    "save_profile",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
