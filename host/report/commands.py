"""`hostctl report RUN_DIR`: draw a run's training curves. Imports matplotlib only inside."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the PNGs go [default: RUN_DIR]",
)
def report(run_dir: Path, out_dir: Path | None) -> None:
    """Loss and accuracy per epoch (early exit and final) and link rate over time, as a PNG
    per run, from the TensorBoard event files `serve` and `demo` write under RUN_DIR."""
    from host.report.figure import write_report_figures

    for path in write_report_figures(run_dir, out_dir):
        click.echo(f"wrote {path}")


COMMANDS = [report]
