"""The plan: step figures per split (measured here or read from a profile) through the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from host.linkemu.presets import LinkProfile
from host.plan.board_profile import (
    CLOUD_FIELDS,
    EDGE_FIELDS,
    STEP_FIELDS,
    BoardProfile,
    ProfileError,
    this_machine,
)
from host.plan.profiling import ProfileSetup, profile_splits
from host.plan.runtime_model import Prediction, RunShape, SplitCosts, best, predict, why
from host.plan.wire import batch_wire_bytes, epoch_end_bytes, eval_wire_bytes, grad_wire_bytes
from models import build_model, split_table


@dataclass(frozen=True)
class PlanRequest:
    """What to plan for: model, link, codec, batch sizes, data size and which splits."""

    model: str
    link: LinkProfile
    codec: str = "int8"
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
    """Predictions per split, the chosen one, and the figures they came from."""

    request: PlanRequest
    predictions: list[Prediction]
    choice: Prediction
    reason: str
    figures: BoardProfile


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


def step_figures(
    req: PlanRequest,
    splits: list[int],
    profile: BoardProfile | None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> BoardProfile:
    """Every step figure for ``splits``: the profile's, and what it lacks measured here."""
    file = profile or BoardProfile()
    missing = [n for n in splits if not file.complete(n)]
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
        here_fields = {k: getattr(here, k) for k in STEP_FIELDS}
        # A board's own edge step sets the scale for the edge figures it left out.
        scale = (
            given["edge_step_s"] / max(here.edge_step_s, 1e-9)
            if "edge_step_s" in given
            else file.slowdown
        )
        merged = {k: given.get(k, here_fields[k] * scale) for k in EDGE_FIELDS}
        merged |= {k: given.get(k, here_fields[k]) for k in CLOUD_FIELDS}
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


def split_costs(
    req: PlanRequest, shapes: dict[int, tuple[int, ...]], figures: BoardProfile
) -> list[SplitCosts]:
    """Per-split costs from the step figures and the wire sizes of the split's messages."""
    out = []
    for n, f in sorted(figures.splits.items()):
        shape = shapes[n]
        out.append(
            SplitCosts(
                split=n,
                edge_step_s=f["edge_step_s"],
                cloud_step_s=f["cloud_step_s"],
                batch_wire_bytes=batch_wire_bytes(
                    shape, req.batch_size, req.codec, req.num_classes
                ),
                edge_eval_s=f.get("edge_eval_s", 0.0),
                cloud_eval_s=f.get("cloud_eval_s", 0.0),
                eval_wire_bytes=eval_wire_bytes(
                    shape, req.eval_batch_size, req.codec, req.num_classes
                ),
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
    predictions = [
        predict(c, req.link, run, req.window, req.colocated)
        for c in split_costs(req, shapes, figures)
    ]
    choice = best(predictions)
    return Plan(req, predictions, choice, why(choice, predictions), figures)
