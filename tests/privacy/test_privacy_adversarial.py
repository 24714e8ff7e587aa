"""PriPHiT's adversarial exit on the torch engine: the adversary learns, lambda reaches the
front's update, the release's noise is in the loop, checkpoints keep the adversary, and
lambda < 0 is refused. (Whether it lowers a fresh attack: tests/privacy/test_privacy_audit.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_runtime.engines.adversarial import AdversarialTorchEngine, check_lambda, release
from edge_runtime.privacy import ActivationNoise
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


def test_release_clips_like_the_edge_and_passes_gradients() -> None:
    """Without noise, the torch release is ActivationNoise.apply's clip, and the front gets a
    gradient through it (the adversary's error reaches the front via the clip)."""
    rng = np.random.default_rng(3)
    activation = rng.normal(scale=5.0, size=(16, 4, 2, 2)).astype(np.float32)
    clip_only = ActivationNoise(clip=3.0)
    expected = clip_only.apply(activation, rng)
    leaf = torch.from_numpy(activation).requires_grad_(True)
    got = release(leaf, clip_only)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0
    noisy = release(torch.from_numpy(activation), ActivationNoise(clip=3.0, noise_multiplier=1.0))
    assert float((noisy - got.detach()).std()) == pytest.approx(3.0, rel=0.15)


def test_with_noise_the_exit_reads_the_noised_activation(digits_bundle: Path) -> None:
    """Same start, same batch, lambda 0: noise in the loop changes the exit's logits and the
    front's update; the activation handed to the link stays the clean one (the edge's release
    adds its own noise)."""
    bundle = edge_bundle(digits_bundle)
    x, y = batch(4)
    steps = {}
    for noise in (None, ActivationNoise(clip=1.0, noise_multiplier=1.0)):
        torch.manual_seed(0)
        engine = AdversarialTorchEngine(bundle, 0.0, noise=noise, threads=1)
        steps[noise is None] = (engine.train_step(x, y), front_weight(engine))
    (clean, clean_w), (noised, noised_w) = steps[True], steps[False]
    np.testing.assert_allclose(clean.activation, noised.activation, rtol=1e-5, atol=1e-6)
    assert float(np.linalg.norm(noised.activation.reshape(32, -1), axis=1).max()) > 1.0
    assert not np.allclose(clean.logits, noised.logits)
    assert not np.allclose(clean_w, noised_w)


def test_the_adversarys_re_encodings_leave_the_running_statistics_alone(
    digits_bundle: Path,
) -> None:
    """Each step counts its batch once in the front's BatchNorm statistics, as plain training
    does, however many remembered batches the adversary re-encodes."""
    torch.manual_seed(0)
    engine = AdversarialTorchEngine(edge_bundle(digits_bundle), 1.0, threads=1)
    for seed in range(4):
        engine.train_step(*batch(seed))
    tracked = [k for k, v in engine.export_weights().items() if k.endswith("num_batches_tracked")]
    assert tracked
    assert all(int(engine.export_weights()[k]) == 4 for k in tracked if k.startswith("front."))


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
