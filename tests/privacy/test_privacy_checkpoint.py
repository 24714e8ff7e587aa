"""The trained front from an edge checkpoint, as either engine writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.engines import make_engine
from edge_runtime.engines.ort_import import available as ort_available
from host.privacy.victim import AuditError, checkpoint_engine, edge_bundle, from_checkpoint


@pytest.mark.parametrize("engine", ["torch", "ort"])
def test_checkpoint_weights_become_the_attacked_front(
    digits_bundle: Path, tmp_path: Path, engine: str
) -> None:
    if engine == "ort" and not ort_available():
        pytest.skip("onnxruntime-training is not installed")
    bundle = edge_bundle(digits_bundle)
    eng = make_engine(engine, bundle, threads=1)
    rng = np.random.default_rng(0)
    for _ in range(3):  # move the weights away from the bundle's initial ones
        x = rng.normal(size=(16, 1, 8, 8)).astype(np.float32)
        eng.train_step(x, rng.integers(0, 10, 16))
    path = tmp_path / "engine.ckpt"
    eng.save_checkpoint(path)
    assert checkpoint_engine(path) == engine
    net = from_checkpoint(bundle, path)
    trained = eng.export_weights()
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    name = next(k for k in trained if k.startswith("front.") and k.endswith("weight"))
    np.testing.assert_allclose(state[name], trained[name], rtol=1e-6)
    initial = make_engine("torch", bundle, threads=1).export_weights()
    assert not np.allclose(state[name], initial[name])


def test_missing_checkpoint_is_a_clear_error(digits_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="does not exist"):
        from_checkpoint(edge_bundle(digits_bundle), tmp_path / "nope.ckpt")
