"""Model zoo for hierarchical training: networks as named blocks with split points.

Imports only torch and the standard library; it knows nothing of where a model runs.
"""

from models.build import build_model
from models.costs import split_table
from models.errors import ModelSpecError
from models.exit_head import EdgeNet, build_exit_head
from models.split_model import SplitModel
from models.zoo import KNOWN_MODELS

__all__ = [
    "KNOWN_MODELS",
    "EdgeNet",
    "ModelSpecError",
    "SplitModel",
    "build_exit_head",
    "build_model",
    "split_table",
]
