"""`hostctl plan`: predict a hierarchical run's time at every split and pick the best one.

Imports torch only inside the command: `hostctl --help` loads this module.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from edge_runtime.command_line import PROGRESS, logging_options
from edge_runtime.errors import UsageFault
from host.cli_options import (
    codec_option,
    input_shape_option,
    link_option,
    model_option,
    num_classes_option,
)
from host.console import console, stdout_console

log = logging.getLogger("hiertrain.plan")


def _parse_splits(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        splits = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        splits = ()
    if not splits:
        raise UsageFault(f"--splits {text!r}: expected split numbers, e.g. 2,4,6")
    return splits


@click.command("plan")
@model_option(required=True, show_default=False)
@link_option
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@codec_option(default="int8", auto=True)
@click.option("--lossless-only", is_flag=True, help="with --codec auto: only lossless codecs")
@input_shape_option
@num_classes_option
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=50000,
    show_default=True,
    help="training samples per epoch",
)
@click.option("--test-samples", type=click.IntRange(min=0), default=10000, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--splits", default=None, help="only these splits, e.g. 2,4,6 [default: all]")
@click.option(
    "--engine",
    type=click.Choice(["ort", "torch"]),
    default="ort",
    show_default=True,
    help="edge engine to time",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="timed steps per split after one warm-up step",
)
@click.option("--window", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path),
    default=None,
    help="board profile JSON: step times per split and/or a slowdown (see host/plan/board_profile.py)",
)
@click.option(
    "--colocated",
    is_flag=True,
    help="the edge runs on this machine beside the host (a virtual board): their compute adds up",
)
@click.option(
    "--save-profile",
    "save_path",
    type=click.Path(path_type=Path),
    default=None,
    help="write the step times used to this JSON file",
)
@click.option(
    "--edges",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="also model a fleet of this many edges (this board, each on its own such link) "
    "feeding one shared tail",
)
@click.option(
    "--ranks",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="with --edges: tail ranks on the host side",
)
@click.option(
    "--host-cores",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="with --edges: cores per host machine (a rank is one thread; ranks past the cores "
    "add nothing) [default: a core per rank; with --colocated, this machine's cores]",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="threads of the edge engine and the tail when timing here (a torchrun rank and "
    "`edge-runtime run --threads 1` run one) [default: every core]",
)
@click.option(
    "--privacy-report",
    "privacy_reports",
    type=click.Path(path_type=Path),
    multiple=True,
    help="a `hostctl privacy audit --report` JSON (repeat, one per split): adds the best "
    "attack's PSNR / SSIM per audited split",
)
@logging_options
def plan(
    model: str,
    link: str,
    batch_size: int,
    eval_batch_size: int,
    codec: str,
    lossless_only: bool,
    input_shape: tuple[int, int, int],
    num_classes: int,
    samples: int,
    test_samples: int,
    epochs: int,
    splits: str | None,
    engine: str,
    steps: int,
    window: int,
    profile_path: Path | None,
    colocated: bool,
    save_path: Path | None,
    edges: int | None,
    ranks: int,
    host_cores: float | None,
    threads: int | None,
    privacy_reports: tuple[Path, ...],
) -> None:
    """Predict a hierarchical run's time per split (edge, link, cloud overlap); mark the best."""
    from host.linkemu import parse_link
    from host.plan.board_profile import load_profile, save_profile
    from host.plan.planner import PlanRequest, make_plan
    from host.plan.view import plan_table

    if lossless_only and codec != "auto":
        raise UsageFault("--lossless-only goes with --codec auto (it limits what auto may pick)")
    req = PlanRequest(
        model=model,
        link=parse_link(link),
        codec=codec,
        lossless_only=lossless_only,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        input_shape=input_shape,
        num_classes=num_classes,
        train_samples=samples,
        test_samples=test_samples,
        epochs=epochs,
        splits=_parse_splits(splits),
        engine=engine,
        steps=steps,
        window=window,
        colocated=colocated,
        threads=threads,
    )
    if host_cores is not None and edges is None:
        raise UsageFault("--host-cores goes with --edges (it sizes the fleet's host)")
    board = load_profile(profile_path) if profile_path else None
    audits = None
    if privacy_reports:  # checked before profiling: a wrong file should not cost a measurement
        from host.plan.audits import load_audits
        from host.plan.planner import activation_shapes

        audits = load_audits(privacy_reports, model, activation_shapes(req))
    with console.status("profiling") as status:

        def progress(msg: str) -> None:
            # The spinner shows it on a terminal; a file or a pipe gets a timestamped line.
            status.update(msg)
            log.info("%s", msg, extra={PROGRESS: True})

        result = make_plan(req, board, progress=progress)
    out = stdout_console()
    out.print(plan_table(result, audits))
    out.print(result.reason)
    if audits:
        shown = {p.split for p in result.predictions}
        for split, figures in sorted(audits.items()):
            where = "" if split in shown else " (not among the planned splits)"
            out.print(
                f"privacy, split {split}{where}: best attack {figures.attack} "
                f"{figures.psnr:.2f} dB, SSIM {figures.ssim:.3f}, "
                f"{figures.psnr_over_baseline:+.2f} dB over the mean image; "
                f"defence {figures.defence} ({figures.source})"
            )
    if edges is not None:
        from host.plan.fleet import fleet_lines, fleet_plan
        from host.plan.planner import activation_shapes, split_costs

        choice = result.choice
        costs = {
            c.split: c
            for c in split_costs(req, activation_shapes(req), result.figures, result.codec)
        }
        fleet = fleet_plan(
            edges=edges,
            ranks=ranks,
            batch_size=batch_size,
            edge_s=choice.edge_s,
            link_s=choice.link_s,
            cloud_s=choice.cloud_s,
            batch_wire_bytes=costs[choice.split].batch_wire_bytes,
            # Colocated edges (virtual boards) compute on this machine's cores with the ranks.
            host_cores=host_cores or ((os.cpu_count() or 1) if colocated else None),
            colocated=colocated,
        )
        for line in fleet_lines(fleet):
            out.print(line)
    if save_path is not None:
        save_profile(result.figures, save_path)
        click.echo(f"wrote {save_path}")


COMMANDS = [plan]
