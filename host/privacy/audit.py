"""`hostctl privacy audit`: how well the input can be rebuilt from what crosses the link.

The data set's train split is divided once (fixed by the seed) into the attacker's auxiliary
images and the victim's images; the two never share a sample. Each front (the bundle's initial
one, then a trained one) is attacked on the victim's activations as they would cross the link
with each codec (and the edge's activation noise, when given), by the learned inversion and the
white-box attack, scored against the baseline of guessing the attacker's mean image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_runtime.data import Dataset, load_dataset
from edge_runtime.link.codecs import CODECS
from edge_runtime.privacy import ActivationNoise
from host.privacy import DEFAULT_DELTA, attacks, metrics
from host.privacy.accounting import privacy_figures
from host.privacy.victim import (
    AuditError,
    edge_bundle,
    edge_net_from_bundle,
    from_checkpoint,
    train_briefly,
)

STAGES = ("initial", "trained")


@dataclass
class AuditOptions:
    """What to audit and how hard to attack."""

    bundle: Path
    data_spec: str
    codecs: tuple[str, ...] = ("fp32", "int8")
    noise: ActivationNoise | None = None
    checkpoint: Path | None = None  # an edge checkpoint; else the audit trains the front briefly
    train_epochs: int = 3
    adv_lambda: float | None = None  # train the front with PriPHiT's adversarial exit
    epochs: int = 1  # epochs of the run whose (epsilon, delta) is reported
    delta: float = DEFAULT_DELTA
    batch_size: int = 32
    victims: int = 256
    aux_fraction: float = 0.5
    decoder: attacks.DecoderTraining = field(default_factory=attacks.DecoderTraining)
    whitebox: attacks.WhiteBoxSettings | None = field(default_factory=attacks.WhiteBoxSettings)
    stages: tuple[str, ...] = STAGES
    seed: int = 0
    limit: int | None = None
    grid_path: Path | None = None
    model_out: Path | None = None

    def check(self) -> None:
        """Raise ValueError naming the valid range of the first bad option."""
        bad = [c for c in self.codecs if c not in CODECS]
        if not self.codecs or bad:
            raise ValueError(f"codec {', '.join(bad) or '(none)'}: valid {', '.join(CODECS)}")
        bad = [s for s in self.stages if s not in STAGES]
        if not self.stages or bad:
            raise ValueError(f"stage {', '.join(bad) or '(none)'}: valid {', '.join(STAGES)}")
        if not 0.0 < self.aux_fraction < 1.0:
            raise ValueError(f"aux fraction must be in (0, 1), got {self.aux_fraction}")
        for name in ("victims", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_epochs < 0:
            raise ValueError(f"train epochs must be >= 0, got {self.train_epochs}")
        if self.adv_lambda is not None and not self.adv_lambda >= 0:
            raise ValueError(f"adversarial exit lambda must be >= 0, got {self.adv_lambda}")
        if self.adv_lambda is not None and self.checkpoint is not None:
            raise ValueError("an adversarial exit is trained in the audit: drop the checkpoint")


@dataclass
class Split:
    """The attacker's images and the victim's, disjoint, and the victim's training data set."""

    aux01: np.ndarray
    aux_norm: np.ndarray
    victim01: np.ndarray
    victim_norm: np.ndarray
    victim_data: Dataset


def split_data(ds: Dataset, opts: AuditOptions) -> Split:
    """Divide the train split: a fixed random `aux_fraction` is the attacker's, the rest the
    victim's (who trains on all of it; the first `victims` of it are attacked)."""
    n = len(ds.y_train)
    order = np.random.default_rng(opts.seed).permutation(n)
    cut = int(round(opts.aux_fraction * n))
    aux, victim = np.sort(order[:cut]), np.sort(order[cut:])
    if cut < 2 or len(victim) < 1:
        raise AuditError(f"{ds.name}: {n} train samples are too few to give the attacker a share")
    victim_data = Dataset.from_arrays(
        f"{ds.name} (victim share)",
        ds.x_train[victim],
        ds.y_train[victim],
        ds.x_test,
        ds.y_test,
        num_classes=ds.num_classes,
    )
    attacked = victim[: opts.victims]
    # Both sides standardise with the victim's statistics: the attacker pushes its images through
    # the front exactly as the edge would push its own.
    return Split(
        aux01=ds.x_train[aux].astype(np.float32) / 255.0,
        aux_norm=victim_data.normalise(ds.x_train[aux]),
        victim01=ds.x_train[attacked].astype(np.float32) / 255.0,
        victim_norm=victim_data.normalise(ds.x_train[attacked]),
        victim_data=victim_data,
    )


def run_audit(opts: AuditOptions, progress=None) -> dict[str, Any]:
    """Run the audit; returns its report (see docs/privacy.md for every key)."""
    say = progress or (lambda _msg: None)
    opts.check()
    t0 = time.perf_counter()
    bundle = edge_bundle(opts.bundle)
    ds = load_dataset(opts.data_spec, seed=opts.seed, limit=opts.limit)
    expected = tuple(bundle.manifest["input_shape"])
    if ds.input_shape != expected:
        raise ValueError(
            f"data {ds.name} is {'x'.join(map(str, ds.input_shape))} but the bundle expects "
            f"{'x'.join(map(str, expected))}"
        )
    split = split_data(ds, opts)
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    fronts: dict[str, torch.nn.Module] = {}
    trained_how: dict[str, Any] = {}
    if "initial" in opts.stages:
        fronts["initial"] = edge_net_from_bundle(bundle).front
    if "trained" in opts.stages:
        if opts.checkpoint is not None:
            say(f"loading the trained front from {opts.checkpoint}")
            fronts["trained"] = from_checkpoint(bundle, opts.checkpoint).front
            trained_how = {"source": "checkpoint", "checkpoint": str(opts.checkpoint)}
        else:
            say(f"training the front for {opts.train_epochs} epochs on the victim's share")
            net, info = train_briefly(
                bundle,
                split.victim_data,
                opts.train_epochs,
                opts.batch_size,
                opts.seed,
                opts.adv_lambda,
                opts.noise,
            )
            fronts["trained"] = net.front
            trained_how = {
                "source": "trained in the audit",
                "adv_lambda": opts.adv_lambda,
                **info.__dict__,
            }
    normaliser = attacks.Normaliser(split.victim_data.mean, split.victim_data.std)
    aux_mean = split.aux01.mean(axis=0)
    baseline = metrics.mean_image_baseline(split.aux01, split.victim01)
    results: list[dict[str, Any]] = []
    shown: dict[str, np.ndarray] = {}
    decoders: dict[str, Any] = {}
    for stage, front in fronts.items():
        twin = attacks.link_front(front)
        aux_batches = attacks.activations(twin, split.aux_norm, opts.batch_size)
        victim_batches = attacks.activations(twin, split.victim_norm, opts.batch_size)
        for codec in opts.codecs:
            link = attacks.LinkView(codec, opts.noise)
            observed = attacks.received(victim_batches, link, rng)
            say(f"{stage} front, {codec}: learned inversion")
            decoder = attacks.train_decoder(aux_batches, split.aux01, link, opts.decoder, rng)
            decoders[f"{stage}-{codec}"] = decoder.state_dict()
            found = {"learned": attacks.invert(decoder, observed)}
            if opts.whitebox is not None:
                say(f"{stage} front, {codec}: white-box")
                found["whitebox"] = attacks.whitebox(
                    twin, observed, opts.batch_size, normaliser, aux_mean, opts.whitebox
                )
            for attack, images in found.items():
                figures = metrics.score(split.victim01, images)
                results.append(
                    {
                        "stage": stage,
                        "codec": codec,
                        "attack": attack,
                        **figures,
                        "psnr_over_baseline": figures["psnr"] - baseline["psnr"],
                        "ssim_over_baseline": figures["ssim"] - baseline["ssim"],
                    }
                )
                shown[f"{stage} {codec} {attack}"] = images[:GRID_SAMPLES]
    report: dict[str, Any] = {
        "bundle": str(opts.bundle),
        "model": bundle.model,
        "split": bundle.split,
        "activation_shape": list(bundle.manifest["activation"]["shape"]),
        "data": ds.describe(),
        "aux_samples": len(split.aux01),
        "victim_samples": len(split.victim_data.y_train),
        "attacked_samples": len(split.victim01),
        "batch_size": opts.batch_size,
        "codecs": list(opts.codecs),
        "defence": _defence(opts),
        "trained_front": trained_how,
        "decoder": opts.decoder.__dict__,
        "whitebox": None if opts.whitebox is None else opts.whitebox.__dict__,
        "baseline": baseline,
        "results": results,
        "best": best_attacks(results),
        "metrics": f"scikit-image {_skimage_version()} (PSNR, SSIM; data range 1)",
        "audit_s": round(time.perf_counter() - t0, 2),
    }
    if opts.grid_path is not None:
        from host.privacy.report import write_grid

        rows = {"original": split.victim01[:GRID_SAMPLES], "mean image": aux_mean[None]}
        report["grid"] = str(write_grid(opts.grid_path, {**rows, **shown}))
    if opts.model_out is not None:
        report["model_out"] = str(_save_models(opts.model_out, decoders, fronts))
    return report


GRID_SAMPLES = 8


def _defence(opts: AuditOptions) -> dict[str, Any] | None:
    if opts.noise is None:
        return None
    if opts.noise.noise_multiplier == 0.0:
        return {"dp_clip": opts.noise.clip, "dp_noise": 0.0, "epsilon": math.inf}
    return privacy_figures(opts.noise.clip, opts.noise.noise_multiplier, opts.epochs, opts.delta)


def best_attacks(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage, the result with the highest PSNR (the attack a user should plan against)."""
    best: dict[str, dict[str, Any]] = {}
    for row in results:
        if row["stage"] not in best or row["psnr"] > best[row["stage"]]["psnr"]:
            best[row["stage"]] = row
    return best


def _save_models(out: Path, decoders: dict[str, Any], fronts: dict[str, torch.nn.Module]) -> Path:
    """The attacker's decoders (state dicts) and the fronts it attacked, for a later look."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(decoders, out / "decoders.pt")
    for stage, front in fronts.items():
        weights = {k: v.detach().numpy() for k, v in front.state_dict().items()}
        np.savez(out / f"front_{stage}.npz", **weights)
    return out


def _skimage_version() -> str:
    from importlib.metadata import version

    return version("scikit-image")
