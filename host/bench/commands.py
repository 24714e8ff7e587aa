"""`hostctl bench`: the modes side by side in one run.

Imports torch only inside the command: `hostctl --help` loads this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.command_line import logging_options, report_option
from edge_runtime.errors import UsageFault
from edge_runtime.link.codecs import CODECS
from edge_runtime.modes import MODE_NAMES, UnknownMode, mode_spec, parse_modes
from host.cli_options import (
    InputShape,
    check_link,
    engine_option,
    link_options,
    lr_schedule_option,
    model_option,
    parse_csv,
)
from host.console import stdout_console
from host.deploy.board import SpeedProfile
from host.session import sigterm_as_interrupt

PROFILES = Path(__file__).parent / "profiles"


def load_speed_profile(spec: str) -> SpeedProfile:
    """A board's speed profile by name (`rpi4`) or a JSON file with `slowdown` and `source`."""
    path = PROFILES / f"{spec}.json" if (PROFILES / f"{spec}.json").is_file() else Path(spec)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.json")))
        raise UsageFault(f"--profile: no profile {spec!r}: use one of {known} or a JSON file")
    try:
        data = json.loads(path.read_text())
        slowdown = float(data.get("slowdown", 0))
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageFault(
            f"--profile: {path} is not a speed profile (JSON, slowdown): {exc}"
        ) from None
    if slowdown < 1:
        raise UsageFault(f"--profile: profile {path} needs a slowdown >= 1")
    return SpeedProfile(
        slowdown=slowdown, source=str(data.get("source", "")), name=str(data.get("name", spec))
    )


@click.command("bench")
@click.option("--modes", default=",".join(MODE_NAMES), show_default=True)
@model_option(default="smallcnn")
@click.option("--split", type=int, default=3, show_default=True)
@link_options
@click.option("--data", default="synthetic", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--codec",
    "codecs",
    default="fp32",
    show_default=True,
    help="hierarchical mode's activation codec(s), e.g. fp32,int8 (a run each)",
)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@lr_schedule_option("the bundle's learning rate per epoch, every mode alike")
@click.option(
    "--input-shape",
    type=InputShape(),
    default=None,
    help="C x H x W of the model [default: the data's]",
)
@click.option(
    "--num-classes",
    type=click.IntRange(min=2),
    default=None,
    help="the model's classes [default: the data's, at least 2]",
)
@engine_option
@click.option(
    "--profile",
    "profile_spec",
    default=None,
    help="the edge board's speed profile: rpi4 or a JSON file (slowdown, source)",
)
@click.option(
    "--edge-threads",
    type=click.IntRange(min=1),
    default=None,
    help="the edge engine's threads [default: all cores]; 1 paces a --profile by the step's "
    "CPU time, which other load here does not stretch (the slowdown then multiplies a "
    "one-thread step)",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs/bench"), show_default=True
)
@report_option(help="also write the JSON report here")
@click.option(
    "--model-out",
    type=click.Path(path_type=Path),
    default=None,
    help="write the hierarchical run's trained model here (edge/tail/full.onnx, model.pt, model.json)",
)
@logging_options
def bench(
    modes: str,
    model: str,
    split: int,
    link: str,
    link_emulation: str,
    data: str,
    epochs: int,
    batch_size: int,
    codecs: str,
    lr: float,
    lr_schedule: str,
    input_shape: tuple[int, int, int] | None,
    num_classes: int | None,
    engine: str,
    profile_spec: str | None,
    edge_threads: int | None,
    out: Path,
    report_path: Path | None,
    model_out: Path | None,
) -> None:
    """Run the chosen modes one after the other and compare them (runtime vs split learning)."""
    from edge_runtime.report import write_report
    from host.bench.modes import BenchOptions, run_bench

    try:
        chosen = parse_modes(modes)
    except UnknownMode as exc:  # a usage error already; the option's name gives it context
        raise UsageFault(f"--modes {modes!r}: {exc}") from None
    if model_out is not None and not any(mode_spec(m).scores_exit for m in chosen):
        raise UsageFault(
            f"--model-out: none of --modes {modes} trains an early exit to write a model of "
            "(hierarchical does)"
        )
    chosen_codecs = parse_csv("--codec", codecs, CODECS)
    linked = [m for m in chosen if mode_spec(m).needs_link]
    check_link(link, link_emulation, linked[0] if linked else chosen[0])
    profile = load_speed_profile(profile_spec) if profile_spec else None
    opts = BenchOptions(
        modes=chosen,
        model=model,
        split=split,
        link=link,
        link_emulation=link_emulation,
        data=data,
        epochs=epochs,
        batch_size=batch_size,
        codecs=chosen_codecs,
        lr=lr,
        lr_schedule=lr_schedule,
        input_shape=input_shape,
        num_classes=num_classes,
        engine=engine,
        out=out,
        slowdown=profile.slowdown if profile and profile.slowdown else 1.0,
        profile_name=f"{profile.name} (slowdown {profile.slowdown:g}x)" if profile else None,
        edge_threads=edge_threads,
        model_out=model_out,
    )
    with sigterm_as_interrupt():
        report = run_bench(opts, stdout_console())
    if report_path:
        write_report(report_path, report)


COMMANDS = [bench]
