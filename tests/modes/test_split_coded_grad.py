"""Split learning's gradient codec (host/cloud/modes/split.py): a lossless batch codec both
ways, fp32 under a lossy one. The run itself: tests/modes/test_modes_inprocess.py."""

from __future__ import annotations

import numpy as np

from edge_runtime.link.codecs import decode_tensor
from edge_runtime.train.messages import Grad
from host.cloud.modes.split import grad_codec


def test_grad_codec_follows_a_lossless_batch_codec_only() -> None:
    assert grad_codec("fp32") == "fp32"
    assert grad_codec("fp32+z") == "fp32+z"
    for lossy in ("fp16", "int8", "fp16+z", "int8+z"):
        assert grad_codec(lossy) == "fp32"  # a lossy gradient would change what is trained


def test_coded_grad_is_bit_exact() -> None:
    grad = np.random.default_rng(0).standard_normal((4, 8, 3, 3)).astype(np.float32)
    grad[:, :3] = 0.0
    msg = Grad.decode(Grad(0, 1, grad, "fp32+z").encode())
    assert msg.codec == "fp32+z"
    assert msg.tensor.tobytes() == grad.tobytes()
    assert decode_tensor(Grad(0, 1, grad, "fp32").encode()[8:]).tobytes() == grad.tobytes()
