"""MODEL_WEIGHTS on the wire: a model's weights round-trip bit for bit, split into parts that
fit a frame, and a body that lies about its tensors is refused."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import Header, MsgType
from edge_runtime.link.messages import decode_message, encode_message
from edge_runtime.model_messages import ModelWeights, weight_messages


def _roundtrip(msg: ModelWeights) -> ModelWeights:
    body = encode_message(msg, seq=3)
    header = Header(type=MsgType.MODEL_WEIGHTS, seq=3, length=len(body) - 16)
    return decode_message(header, body[16:])


def test_weights_round_trip_in_parts() -> None:
    rng = np.random.default_rng(0)
    weights = {
        "front.0.weight": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
        "front.1.running_mean": rng.standard_normal(16).astype(np.float32),
        "front.1.num_batches_tracked": np.array(7, np.int64),
        "exit_head.fc.weight": rng.standard_normal((10, 300)).astype(np.float32),
    }
    msgs = weight_messages(weights, {"classes": ["a"]}, part_bytes=2000)
    assert len(msgs) > 1 and all(m.parts == len(msgs) for m in msgs)
    merged: dict[str, np.ndarray] = {}
    for m in msgs:
        got = _roundtrip(m)
        assert got.meta == {"classes": ["a"]} and got.seq == 3
        merged.update(got.tensors)
    assert list(merged) == list(weights)
    for k, v in weights.items():
        assert merged[k].dtype == v.dtype and np.array_equal(merged[k], v), k


def test_a_body_that_lies_is_refused() -> None:
    msg = ModelWeights(0, 1, {"w": np.ones((4, 4), np.float32)})
    body = encode_message(msg)[16:]
    short = body[:-8]  # the index promises 64 bytes of tensor, 56 arrive
    with pytest.raises(ProtocolError, match="runs past the payload"):
        decode_message(Header(type=MsgType.MODEL_WEIGHTS, length=len(short)), short)
    bad = ModelWeights(2, 1, {})  # part 2 of 1
    payload = encode_message(bad)[16:]
    with pytest.raises(ProtocolError, match="part 2 of 1"):
        decode_message(Header(type=MsgType.MODEL_WEIGHTS, length=len(payload)), payload)


USER_MODEL = """
import torch.nn as nn

def factory(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)),
    )
"""


def test_a_user_model_goes_out_with_its_source(exported, tmp_path_factory, tmp_path) -> None:
    """model.pt has no code: a user model's factory travels as its source file, hashed."""
    from edge_runtime.bundle import EDGE_WEIGHTS, TAIL_WEIGHTS, load_bundle
    from host.model.assemble import ModelParts
    from host.model.collect import model_out
    from models.rebuild import read_weights

    src = tmp_path_factory.getbasetemp() / "user_net_out.py"
    src.write_text(USER_MODEL)
    root = exported(f"{src}:factory", 1, input_shape=(1, 8, 8))
    bundle = load_bundle(root)
    parts = ModelParts(
        bundle.manifest,
        root / "cloud",
        read_weights(root / "edge" / EDGE_WEIGHTS),
        read_weights(root / "cloud" / TAIL_WEIGHTS),
    )
    lines: list[str] = []
    desc = model_out(parts, tmp_path / "m", say=lines.append)
    assert any(name.startswith("code/") and name.endswith(".py") for name in desc["files"])
    assert [line[0] for line in lines[:3]] == ["✓", "✓", "✓"]
