"""Model zoo for hierarchical training: networks as named blocks with split points.

Imports only torch, numpy and the standard library; it knows nothing of where a model runs.
`models.rebuild` turns a bundle manifest back into torch modules; `models.train_step` is the
one torch training step.
"""

from models.build import build_model, model_from_spec
from models.costs import split_table
from models.errors import ManifestError, ModelSpecError
from models.exit_head import EdgeNet, build_exit_head
from models.optim import build_optimizer
from models.split_model import SplitModel
from models.train_step import StepOutcome, train_step
from models.zoo import KNOWN_MODELS

__all__ = [
    "KNOWN_MODELS",
    "EdgeNet",
    "ManifestError",
    "ModelSpecError",
    "SplitModel",
    "StepOutcome",
    "build_exit_head",
    "build_model",
    "build_optimizer",
    "model_from_spec",
    "split_table",
    "train_step",
]
