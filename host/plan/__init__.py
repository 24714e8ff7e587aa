"""`hostctl plan`: which split trains fastest, from a runtime model of the three-stage pipeline.

`runtime_model` is the arithmetic (no I/O), `profiling` measures step times here, `board_profile`
reads and writes them as JSON, `wire` sizes the messages, `planner` puts them together.
"""

from host.plan.board_profile import BoardProfile, ProfileError, load_profile, save_profile
from host.plan.planner import Plan, PlanRequest, make_plan
from host.plan.runtime_model import Prediction, RunShape, SplitCosts, predict

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
