"""The plan: step figures per split (measured here or read from a profile) through the model."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_runtime.link.codecs import BY_NAME, CODECS, LOSSLESS_CODECS
from host.linkemu.presets import LinkSpec
from host.plan.board_profile import (
    CODEC_FIGURES,
    STEP_FIELDS,
    BoardProfile,
    ProfileError,
    codec_key,
    is_edge_figure,
    this_machine,
)
from host.plan.profiling import ProfileSetup, profile_splits
from host.plan.runtime_model import (
    Prediction,
    RunShape,
    SplitCosts,
    best,
    predict,
    why,
    why_codec,
)
from host.plan.wire import batch_wire_bytes, epoch_end_bytes, eval_wire_bytes, grad_wire_bytes
from models import build_model, split_table


@dataclass(frozen=True)
class PlanRequest:
    """What to plan for: model, link, codec, batch sizes, data size and which splits.

    ``codec="auto"`` plans every codec (only the lossless ones with ``lossless_only``) and picks
    codec and split together.
    """

    model: str
    link: LinkSpec
    codec: str = "int8"
    lossless_only: bool = False
    batch_size: int = 32
    eval_batch_size: int = 128
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    train_samples: int = 50000
    test_samples: int = 10000
    epochs: int = 1
    splits: tuple[int, ...] | None = None  # None: every valid split (or the profile's)
    engine: str = "ort"
    steps: int = 3
    window: int = 16
    colocated: bool = False  # edge and host on one CPU (a virtual board): compute adds up
    threads: int | None = None  # edge engine and tail threads when timing here (None: all)

    @property
    def candidates(self) -> tuple[str, ...]:
        """The codecs to plan: the one asked for, or every allowed one for ``auto``."""
        if self.codec != "auto":
            return (self.codec,)
        return LOSSLESS_CODECS if self.lossless_only else CODECS

    @property
    def run(self) -> RunShape:
        return RunShape(
            train_samples=self.train_samples,
            test_samples=self.test_samples,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            epochs=self.epochs,
            epoch_end_bytes=epoch_end_bytes(self.test_samples, self.eval_batch_size),
        )


@dataclass(frozen=True)
class Plan:
    """Predictions per split, the chosen one, and the figures they came from.

    ``predictions`` are the chosen codec's; ``by_codec`` has every planned codec's.
    """

    request: PlanRequest
    predictions: list[Prediction]
    choice: Prediction
    reason: str
    figures: BoardProfile
    codec: str = ""
    by_codec: dict[str, list[Prediction]] = field(default_factory=dict)


def activation_shapes(req: PlanRequest) -> dict[int, tuple[int, ...]]:
    """Activation shape (per sample) at every valid split; ModelSpecError for a bad model."""
    model = build_model(req.model, input_shape=req.input_shape, num_classes=req.num_classes)
    return {row["split"]: tuple(row["activation_shape"]) for row in split_table(model)}


def chosen_splits(req: PlanRequest, valid: list[int], profile: BoardProfile | None) -> list[int]:
    """--splits, else the profile's splits, else every valid split."""
    if req.splits is not None:
        bad = [n for n in req.splits if n not in valid]
        if bad:
            raise ProfileError(
                f"--splits {','.join(map(str, bad))}: {req.model} has splits "
                f"{valid[0]}..{valid[-1]}"
            )
        return sorted(set(req.splits))
    if profile is not None and profile.splits:
        return sorted(n for n in profile.splits if n in valid)
    return valid


def needed_codec_figures(req: PlanRequest) -> tuple[str, ...]:
    """Codec figures the plan cannot do without: a coded codec's ratio depends on the values.

    A plain codec's size follows from the shape; its coding time, where a profile lacks it,
    counts as nothing (as before codecs were timed).
    """
    return tuple(codec_key(c, f) for c in req.candidates if BY_NAME[c].coded for f in CODEC_FIGURES)


def step_figures(
    req: PlanRequest,
    splits: list[int],
    profile: BoardProfile | None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> BoardProfile:
    """Every step figure for ``splits``: the profile's, and what it lacks measured here."""
    file = profile or BoardProfile()
    missing = [n for n in splits if not file.complete(n, needed_codec_figures(req))]
    measured = {
        t.split: t
        for t in profile_splits(
            ProfileSetup(
                model=req.model,
                input_shape=req.input_shape,
                num_classes=req.num_classes,
                batch_size=req.batch_size,
                eval_batch_size=req.eval_batch_size,
                engine=req.engine,
                steps=req.steps,
                threads=req.threads,
            ),
            missing,
            progress,
        )
    }
    figures: dict[int, dict[str, float]] = {}
    for n in splits:
        given = file.splits.get(n, {})
        here = measured.get(n)
        if here is None:
            figures[n] = dict(given)
            continue
        here_fields = {k: getattr(here, k) for k in STEP_FIELDS} | here.codecs
        # A board's own edge step sets the scale for the edge figures it left out (coding too:
        # the board's CPU codes its activations).
        scale = (
            given["edge_step_s"] / max(here.edge_step_s, 1e-9)
            if "edge_step_s" in given
            else file.slowdown
        )
        merged = dict(given)
        for k, v in here_fields.items():
            merged.setdefault(k, v * scale if is_edge_figure(k) else v)
        figures[n] = merged
    if not missing:
        source = file.source
    elif profile is None:
        source = "measured by hostctl plan"
    else:
        source = (
            f"{file.source.rstrip('. ') or 'profile'}; "
            f"the rest measured here (edge x {file.slowdown:g})"
        )
    return BoardProfile(
        model=req.model,
        batch_size=req.batch_size,
        eval_batch_size=req.eval_batch_size,
        engine=file.engine if not missing else req.engine,
        slowdown=1.0,  # already in the figures
        source=source,
        measured_on=file.measured_on if not missing else this_machine(),
        splits=figures,
    )


def coded_wire_bytes(
    plain_bytes: int, shape: tuple[int, ...], rows: int, codec: str, ratio: float | None
) -> int:
    """A message's framed bytes under ``codec``, from its base codec's (``plain_bytes``).

    A coded tensor's size depends on the values: the measured ratio (coded bytes over fp32's)
    replaces the base codec's elements; COBS adds a byte in 254 to what the coding leaves.
    """
    spec = BY_NAME[codec]
    if not spec.coded:
        return plain_bytes
    if ratio is None:
        raise ProfileError(f"no measured ratio for {codec}: profile the split again")
    elements = rows * math.prod(shape)
    coded = ratio * elements * 4 * (1 + 1 / 254)
    return int(plain_bytes - elements * spec.wire.itemsize + coded)


def split_costs(
    req: PlanRequest,
    shapes: dict[int, tuple[int, ...]],
    figures: BoardProfile,
    codec: str | None = None,
) -> list[SplitCosts]:
    """Per-split costs from the step figures and the wire sizes of the split's messages.

    ``codec`` (default: the request's) sets the activation's bytes and the coding time: the
    edge encodes every batch it sends, the host decodes it.
    """
    codec = codec or req.codec
    base = BY_NAME[codec].base
    eval_rows = req.eval_batch_size / req.batch_size
    out = []
    for n, f in sorted(figures.splits.items()):
        shape = shapes[n]
        ratio = f.get(codec_key(codec, "ratio"))
        encode_s = f.get(codec_key(codec, "encode_s"), 0.0)
        decode_s = f.get(codec_key(codec, "decode_s"), 0.0)
        out.append(
            SplitCosts(
                split=n,
                edge_step_s=f["edge_step_s"],
                cloud_step_s=f["cloud_step_s"],
                batch_wire_bytes=coded_wire_bytes(
                    batch_wire_bytes(shape, req.batch_size, base, req.num_classes),
                    shape,
                    req.batch_size,
                    codec,
                    ratio,
                ),
                edge_eval_s=f.get("edge_eval_s", 0.0),
                cloud_eval_s=f.get("cloud_eval_s", 0.0),
                eval_wire_bytes=coded_wire_bytes(
                    eval_wire_bytes(shape, req.eval_batch_size, base, req.num_classes),
                    shape,
                    req.eval_batch_size,
                    codec,
                    ratio,
                ),
                edge_encode_s=encode_s,
                cloud_decode_s=decode_s,
                edge_eval_encode_s=encode_s * eval_rows,
                cloud_eval_decode_s=decode_s * eval_rows,
                edge_warmup_s=f.get("edge_warmup_s", 0.0),
                cloud_warmup_s=f.get("cloud_warmup_s", 0.0),
                split_batch_wire_bytes=batch_wire_bytes(
                    shape, req.batch_size, "fp32", req.num_classes
                ),
                grad_wire_bytes=grad_wire_bytes(shape, req.batch_size),
                split_eval_wire_bytes=eval_wire_bytes(
                    shape, req.eval_batch_size, "fp32", req.num_classes
                ),
            )
        )
    return out


def make_plan(
    req: PlanRequest,
    profile: BoardProfile | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Plan:
    """Figures (profile and/or measurement), predictions per split, and the best split."""
    if profile is not None:
        profile.check_fits(req.model, req.batch_size, req.eval_batch_size)
    shapes = activation_shapes(req)
    splits = chosen_splits(req, sorted(shapes), profile)
    if not splits:
        raise ProfileError(f"the profile has none of {req.model}'s splits {sorted(shapes)}")
    figures = step_figures(req, splits, profile, progress)
    run = req.run
    by_codec = {
        codec: [
            predict(c, req.link, run, req.window, req.colocated)
            for c in split_costs(req, shapes, figures, codec)
        ]
        for codec in req.candidates
    }
    # Codec and split together; a tie goes to the codec listed first (less coding on the edge).
    codec = min(by_codec, key=lambda c: (round(best(by_codec[c]).runtime_s, 9), CODECS.index(c)))
    predictions = by_codec[codec]
    choice = best(predictions)
    reason = why(choice, predictions)
    if len(by_codec) > 1:
        reason = why_codec(codec, by_codec, req.lossless_only) + "\n" + reason
    return Plan(req, predictions, choice, reason, figures, codec, by_codec)
