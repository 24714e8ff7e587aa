"""Step times per split, measured by a short run of the real engines on this machine.

Each split is exported once into a temporary directory; the edge engine (ORT or torch) trains
front + exit head on random batches and the host's TailTrainer trains the tail on the
activations it makes. The first step of each is timed apart (warm-up), then the median of a
few more is the step time. Eval steps (inference at the eval batch size) are timed the same way.

Then every codec codes the activation of one more training step (the front has trained through
the warm-up and the timed steps by then, on random inputs): the coded bytes over fp32's and the
best of three encode and decode times, since the edge's CPU pays for coding and the ratio of a
``+z`` codec depends on the activation's values, not only its shape.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import load_bundle
from edge_runtime.engines import make_engine
from edge_runtime.link.codecs import CODECS, decode_tensor, encode_tensor
from host.cloud.tail import TailTrainer
from host.export import ExportOptions, export_bundle
from host.plan.board_profile import codec_key

_MAX_WARMUP = 6
_SETTLED = 0.85  # a call within 15% of the one before: the pace has settled


@dataclass(frozen=True)
class StepTimes:
    """Measured seconds for one split; ``*_warmup_s`` is the first step's time beyond the median."""

    split: int
    activation_shape: tuple[int, ...]
    edge_step_s: float
    edge_eval_s: float
    cloud_step_s: float
    cloud_eval_s: float
    edge_warmup_s: float = 0.0
    cloud_warmup_s: float = 0.0
    codecs: dict[str, float] = field(default_factory=dict)  # codec_key(...) -> figure


@dataclass(frozen=True)
class ProfileSetup:
    """What to profile: the model, its input, the batch sizes and how many steps to time."""

    model: str
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    batch_size: int = 32
    eval_batch_size: int = 128
    engine: str = "ort"
    steps: int = 3  # timed steps after the warm-up step
    threads: int | None = None  # engine threads [default: all cores]


def _timed(step: Callable[[], object], steps: int, budget_s: float = 0.25) -> tuple[float, float]:
    """(median of at least ``steps`` timed calls after warm-up, warm-up time beyond it).

    Warm-up lasts while each call is still clearly faster than the one before (ORT takes a few
    steps to settle its allocator: 110, 50, 26, 17, 14, 14 ms), at most ``_MAX_WARMUP`` calls.
    Cheap steps then repeat until ``budget_s`` is spent (at most 25 calls): on shared cores a
    median of three millisecond steps is mostly noise.
    """
    warm = [_once(step)]
    while len(warm) < _MAX_WARMUP:
        warm.append(_once(step))
        if warm[-1] > _SETTLED * warm[-2]:
            break
    times = [warm.pop()]  # the call that showed the pace had settled counts
    spent = times[0]
    while len(times) < steps or (spent < budget_s and len(times) < 25):
        times.append(_once(step))
        spent += times[-1]
    median = statistics.median(times)
    return median, max(0.0, sum(warm) - median * len(warm))


def _once(step: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def codec_figures(activation: np.ndarray, reps: int = 3) -> dict[str, float]:
    """Per codec: coded bytes over fp32's, best-of-``reps`` encode and decode seconds."""
    fp32 = activation.nbytes
    figures = {}
    for codec in CODECS:
        encoded, encode_s = _best(lambda c=codec: encode_tensor(activation, c), reps)
        _, decode_s = _best(lambda b=encoded: decode_tensor(b), reps)
        figures[codec_key(codec, "ratio")] = len(encoded) / max(fp32, 1)
        figures[codec_key(codec, "encode_s")] = encode_s
        figures[codec_key(codec, "decode_s")] = decode_s
    return figures


def _best(call: Callable[[], object], reps: int) -> tuple[object, float]:
    out, best = None, float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _time_edge(
    setup: ProfileSetup, bundle_dir: Path, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    """The edge engine's step and eval times, and the activation the tail is timed on."""
    engine = make_engine(setup.engine, load_bundle(bundle_dir / "edge"), threads=setup.threads)
    activation = engine.train_step(x, y).activation
    step, step_warm = _timed(lambda: engine.train_step(x, y), setup.steps)
    ev, eval_warm = _timed(lambda: engine.eval_step(x, y), 1)
    trained = engine.train_step(x, y).activation  # after the warm-up and timed steps
    return {
        "activation": activation,
        "step": step,
        "eval": ev,
        "warmup": step_warm + eval_warm,
        "codecs": codec_figures(np.asarray(trained, dtype=np.float32)),
    }


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch at ``threads`` threads inside (a torchrun rank runs one), then as before (None:
    unchanged)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def profile_split(setup: ProfileSetup, bundle_dir: Path) -> StepTimes:
    """Time one exported split's edge and cloud steps (training and eval).

    Eval steps are timed at the training batch size and scaled to the eval batch size: CPU
    inference time grows about linearly with the batch, and it keeps ResNet-18's nine splits
    within a couple of minutes.
    """
    manifest = load_bundle(bundle_dir / "edge").manifest
    manifest_split = manifest["split"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((setup.batch_size, *setup.input_shape)).astype(np.float32)
    # The model's class count, not the option's: a user factory may fix its own (7 of them
    # under the default --num-classes 10 gave labels the tail's loss cannot take).
    y = rng.integers(0, manifest["num_classes"], setup.batch_size).astype(np.int64)
    eval_scale = setup.eval_batch_size / setup.batch_size

    edge = _time_edge(setup, bundle_dir, x, y)
    # ORT's idle worker threads spin for a while: let them go before timing the host's side.
    gc.collect()
    activation = edge["activation"]
    tail = TailTrainer(load_bundle(bundle_dir / "cloud"))
    with torch_threads(setup.threads):
        cloud_step, cloud_warm = _timed(lambda: tail.train_step(activation, y), setup.steps)
        cloud_eval, _ = _timed(lambda: tail.predict(activation), 1)
    return StepTimes(
        split=manifest_split,
        activation_shape=tuple(activation.shape[1:]),
        edge_step_s=edge["step"],
        edge_eval_s=edge["eval"] * eval_scale,
        cloud_step_s=cloud_step,
        cloud_eval_s=cloud_eval * eval_scale,
        edge_warmup_s=edge["warmup"],
        cloud_warmup_s=cloud_warm,
        codecs=edge["codecs"],
    )


def profile_splits(
    setup: ProfileSetup,
    splits: Iterable[int],
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[StepTimes]:
    """Export each split once into a temporary directory and time it."""
    out = []
    with tempfile.TemporaryDirectory(prefix="hiertrain-plan-") as tmp:
        for split in splits:
            progress(f"split {split}: exporting")
            bundle_dir = Path(tmp) / f"split{split}"
            export_bundle(
                ExportOptions(
                    model=setup.model,
                    split=split,
                    input_shape=setup.input_shape,
                    num_classes=setup.num_classes,
                    validate=False,  # a throwaway bundle, timed and removed
                ),
                bundle_dir,
            )
            gc.collect()  # the export's garbage, collected now rather than mid-timing
            progress(f"split {split}: timing the edge and cloud steps")
            out.append(profile_split(setup, bundle_dir))
    return out
