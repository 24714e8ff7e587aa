"""`hostctl demo`: export, cloud and edge on this machine over an emulated link, and a report.

Imports torch only inside the command: `hostctl --help` loads this module.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.command_line import logging_options, report_option
from edge_runtime.errors import UsageFault
from edge_runtime.modes import MODE_NAMES, mode_spec
from host.cli_options import (
    check_link,
    codec_option,
    engine_option,
    link_options,
    lr_schedule_option,
)
from host.console import stdout_console
from host.session import sigterm_as_interrupt


@click.command()
@link_options
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(MODE_NAMES),
    default="hierarchical",
    show_default=True,
)
@click.option("--data", default="synthetic:6000", show_default=True)
@lr_schedule_option("the learning rate per epoch of the model the demo exports")
@codec_option(default="int8+z")
@engine_option
@click.option(
    "--work-dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True
)
@report_option(help="[default: <work-dir>/report.json]")
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="use this bundle instead of exporting the small model",
)
@click.option(
    "--model-out",
    type=click.Path(path_type=Path),
    default=None,
    help="write the trained model here (edge/tail/full.onnx, model.pt, model.json)",
)
@click.option("--infer", is_flag=True, help="after training, hierarchical inference with the model")
@click.option("--resume", is_flag=True, help="continue the interrupted demo in --work-dir")
@logging_options
def demo(
    link: str,
    link_emulation: str,
    epochs: int,
    mode: str,
    data: str,
    lr_schedule: str,
    codec: str,
    engine: str,
    work_dir: Path,
    report_path: Path | None,
    bundle_dir: Path | None,
    model_out: Path | None,
    infer: bool,
    resume: bool,
) -> None:
    """Everything on one machine: export, cloud, edge over a 3G-like link, and a report."""
    from host.session import SessionOptions, run_session

    check_link(link, link_emulation, mode)
    given = click.get_current_context().get_parameter_source("lr_schedule")
    if bundle_dir is not None and given is not click.core.ParameterSource.DEFAULT:
        # A bundle carries the schedule it was exported with; this one would be ignored.
        raise UsageFault(
            "--lr-schedule: --bundle carries its own schedule (hostctl export --lr-schedule); "
            "give one or the other"
        )
    if (infer or model_out) and not mode_spec(mode).scores_exit:
        raise UsageFault(f"--mode {mode} trains no early exit: --infer and --model-out need one")
    opts = SessionOptions(
        link=link,
        link_emulation=link_emulation,
        epochs=epochs,
        mode=mode,
        data=data,
        lr_schedule=lr_schedule,
        codec=codec,
        engine=engine,
        work_dir=work_dir,
        report=report_path,
        bundle=bundle_dir,
        model_out=model_out,
        infer=infer,
        resume=resume,
    )
    with sigterm_as_interrupt():
        run_session(opts, stdout_console())


COMMANDS = [demo]
