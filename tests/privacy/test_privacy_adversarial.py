"""PriPHiT's adversarial exit on the torch engine: the adversary learns, lambda reaches the
front's update, checkpoints keep the adversary, and lambda < 0 is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_runtime.engines.adversarial import AdversarialTorchEngine, check_lambda
from host.privacy.victim import edge_bundle


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(32, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 32)


def front_weight(engine: AdversarialTorchEngine) -> np.ndarray:
    weights = engine.export_weights()
    return weights[next(k for k in weights if k.startswith("front.") and k.endswith("weight"))]


def test_the_adversary_learns_to_reconstruct(digits_bundle: Path) -> None:
    torch.manual_seed(0)
    engine = AdversarialTorchEngine(edge_bundle(digits_bundle), 0.0, threads=1)
    x, y = batch()
    engine.train_step(x, y)
    first = engine.last_adversary_mse
    for _ in range(30):
        engine.train_step(x, y)
    assert engine.last_adversary_mse < 0.8 * first


def test_lambda_reaches_the_fronts_update(digits_bundle: Path) -> None:
    """Same start, same batch: with lambda > 0 the front moves differently than with 0."""
    bundle = edge_bundle(digits_bundle)
    x, y = batch(1)
    moved = []
    for lam in (0.0, 5.0):
        torch.manual_seed(0)  # the same adversary initialisation for both
        engine = AdversarialTorchEngine(bundle, lam, threads=1)
        for _ in range(3):
            engine.train_step(x, y)
        moved.append(front_weight(engine))
    assert not np.allclose(moved[0], moved[1])


def test_checkpoint_keeps_the_adversary(digits_bundle: Path, tmp_path: Path) -> None:
    bundle = edge_bundle(digits_bundle)
    torch.manual_seed(0)
    engine = AdversarialTorchEngine(bundle, 1.0, threads=1)
    x, y = batch(2)
    engine.train_step(x, y)
    engine.save_checkpoint(tmp_path / "engine.ckpt")
    torch.manual_seed(1)  # a differently initialised adversary, then restored
    restored = AdversarialTorchEngine(bundle, 1.0, threads=1)
    restored.load_checkpoint(tmp_path / "engine.ckpt")
    a = engine._adversary.state_dict()
    b = restored._adversary.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(front_weight(engine), front_weight(restored))


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_lambda_names_the_range(value: float) -> None:
    with pytest.raises(ValueError, match="lambda must be a finite number >= 0"):
        check_lambda(value)
