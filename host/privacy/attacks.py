"""Reconstruction attacks on the activations that cross the link.

- `LinkView`: what an observer of the link receives for a batch of activations: the edge's
  activation noise (if any), then the real codec's encode and decode (edge_runtime/link/codecs).
- Learned inversion (`train_decoder`, `invert`): a decoder from received activation to image,
  trained on the attacker's own auxiliary images pushed through the same front and link.
- White-box (`whitebox`): given the front's weights, optimise an input batch so that the front's
  activation of it matches the received one.

Activations are computed as the edge computes those it sends in training (BATCH): train-mode
forward, so BatchNorm normalises with the batch's own statistics, over batches of the run's
batch size. The white-box attack optimises a whole batch at once for the same reason.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_runtime.link.codecs import decode_tensor, encode_tensor
from edge_runtime.privacy import ActivationNoise
from models.inversion import InversionDecoder


@dataclass
class LinkView:
    """The transform between the front's output and what an observer of the link decodes."""

    codec: str
    noise: ActivationNoise | None = None

    def receive(self, activation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One batch as it arrives: noised on the edge (if defended), encoded, decoded."""
        released = activation if self.noise is None else self.noise.apply(activation, rng)
        return decode_tensor(encode_tensor(released, self.codec))


@dataclass
class Normaliser:
    """The data set's per-channel standardisation, as torch ops on [0, 1] pixels."""

    mean: np.ndarray
    std: np.ndarray

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.as_tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x01 - mean) / std


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def link_front(front: nn.Module) -> nn.Module:
    """A copy of the front in train mode (batch statistics), frozen, for the attacks."""
    twin = copy.deepcopy(front).train()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def activations(front: nn.Module, x_norm: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The front's train-mode activations of `x_norm`, one array per batch of `batch_size`."""
    return [
        front(torch.from_numpy(np.ascontiguousarray(x_norm[sl]))).numpy()
        for sl in _chunks(len(x_norm), batch_size)
    ]


def received(batches: list[np.ndarray], link: LinkView, rng: np.random.Generator) -> np.ndarray:
    """Every batch through the link, concatenated."""
    return np.concatenate([link.receive(b, rng) for b in batches])


@dataclass
class DecoderTraining:
    """How long the learned attack trains its decoder."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 64


def train_decoder(
    aux_batches: list[np.ndarray],
    aux_images: np.ndarray,
    link: LinkView,
    settings: DecoderTraining,
    rng: np.random.Generator,
) -> InversionDecoder:
    """Fit a decoder on the attacker's pairs (its received activation, its image).

    The link is applied afresh each epoch, so a noised link gives new noise each time, as the
    victim's own activations get: the decoder learns to denoise what it will be shown.
    """
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    torch.manual_seed(int(rng.integers(2**31)))
    decoder = InversionDecoder(aux_batches[0].shape[1:], aux_images.shape[1:], settings.width)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=settings.lr)
    target = torch.from_numpy(aux_images.astype(np.float32))
    decoder.train()
    for _ in range(settings.epochs):
        inputs = torch.from_numpy(received(aux_batches, link, rng))
        order = torch.randperm(len(target), generator=gen)
        for sl in _chunks(len(target), settings.batch_size):
            pick = order[sl]
            loss = nn.functional.mse_loss(decoder(inputs[pick]), target[pick])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return decoder.eval()


@torch.no_grad()
def invert(decoder: InversionDecoder, observed: np.ndarray) -> np.ndarray:
    """The decoder's reconstructions of observed activations, [0, 1] NCHW."""
    return decoder(torch.from_numpy(np.ascontiguousarray(observed, np.float32))).numpy()


@dataclass
class WhiteBoxSettings:
    """The white-box attack's optimisation."""

    steps: int = 200
    lr: float = 0.1
    tv_weight: float = 1e-3


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def whitebox(
    front: nn.Module,
    observed: np.ndarray,
    batch_size: int,
    normalise: Normaliser,
    start_image: np.ndarray,
    settings: WhiteBoxSettings,
) -> np.ndarray:
    """Optimise inputs (pixels in [0, 1] through a sigmoid) so that front(input) matches the
    observed activations, batch by batch; starts from `start_image` (the attacker's mean image)
    and adds a small total-variation prior. Returns [0, 1] NCHW reconstructions."""
    out = []
    start = torch.from_numpy(np.clip(start_image, 0.02, 0.98).astype(np.float32))
    for sl in _chunks(len(observed), batch_size):
        target = torch.from_numpy(np.ascontiguousarray(observed[sl], np.float32))
        logits = torch.logit(start).expand(len(target), *start.shape).clone().requires_grad_(True)
        optimiser = torch.optim.Adam([logits], lr=settings.lr)
        for _ in range(settings.steps):
            x01 = torch.sigmoid(logits)
            loss = nn.functional.mse_loss(front(normalise(x01)), target)
            loss = loss + settings.tv_weight * _total_variation(x01)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        out.append(torch.sigmoid(logits).detach().numpy())
    return np.concatenate(out)
