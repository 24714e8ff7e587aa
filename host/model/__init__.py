"""The trained model out: assemble the edge's front + exit and the host's tail into files a user
can deploy (ONNX for each part and the whole, a torch state dict, a JSON description), and check
each ONNX file against the torch modules it came from."""

from host.model.assemble import ModelParts, write_model
from host.model.validate import ModelCheckFailed, validate_model_dir

__all__ = ["ModelCheckFailed", "ModelParts", "validate_model_dir", "write_model"]
