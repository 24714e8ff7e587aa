"""The trained model out: assemble the edge's front + exit and the host's tail into files a user
can deploy (ONNX for each part and the whole, a torch state dict, a JSON description), and check
each ONNX file against the torch modules it came from.

Nothing is imported here: `hostctl --help` loads host.model.commands and must not load torch.
"""
