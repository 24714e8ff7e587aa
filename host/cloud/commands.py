"""`hostctl serve`: the cloud trainer, from the command line.

Imports torch only inside the command: `hostctl --help` loads this module.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.command_line import logging_options
from edge_runtime.errors import UsageFault
from edge_runtime.modes import LINK_MODE_NAMES
from host.cli_options import report_option
from host.console import console


@click.command("serve")
@click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the bundle directory (DIR or DIR/cloud)",
)
@click.option("--listen", default=None, help="tcp://HOST:PORT")
@click.option("--serial", default=None, help="serial device (or pyserial URL) of one edge")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path("runs/cloud"),
    show_default=True,
    help="tail checkpoints, one per edge and run",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="batches between checkpoints (also at epoch ends)",
)
@click.option("--exit-when-done", is_flag=True, help="exit once every edge has said BYE")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="pre-shared link key [default: the bundle's link.key]",
)
@report_option(help="write the cloud's JSON report here")
@click.option(
    "--metrics-csv",
    type=click.Path(path_type=Path),
    default=None,
    help="per-batch metrics of the tail",
)
@click.option("--link", "link_label", default=None, help="a label for the link, for the report")
@click.option(
    "--mode",
    type=click.Choice(LINK_MODE_NAMES),
    default="hierarchical",
    show_default=True,
)
@click.option("--baud", type=int, default=115200, show_default=True)
@click.option("--window", type=int, default=16, show_default=True)
@logging_options
def serve_cmd(
    bundle_dir: Path,
    listen: str | None,
    serial: str | None,
    state_dir: Path,
    checkpoint_every: int,
    exit_when_done: bool,
    key_file: Path | None,
    report_path: Path | None,
    metrics_csv: Path | None,
    link_label: str | None,
    mode: str,
    baud: int,
    window: int,
) -> None:
    """The cloud trainer: train each edge's tail on the activations it streams."""
    from edge_runtime.bundle import load_bundle, read_key_file
    from edge_runtime.link import LinkConfig
    from host.cloud.serve import parse_listen, serve

    if (listen is None) == (serial is None):
        raise UsageFault("serve needs exactly one of --listen tcp://HOST:PORT or --serial DEVICE")
    if listen is not None:
        parse_listen(listen)  # a bad address is a usage error before the tail is built
    bundle = load_bundle(bundle_dir)
    if bundle.side == "edge":
        raise UsageFault(f"--bundle {bundle_dir}: give the bundle directory or its cloud/ half")
    key = read_key_file(key_file) if key_file else bundle.key()
    result = serve(
        bundle,
        listen=listen,
        serial=serial,
        state_dir=state_dir,
        key=key,
        report=report_path,
        metrics_csv=metrics_csv,
        checkpoint_every=checkpoint_every,
        exit_when_done=exit_when_done,
        link_label=link_label,
        config=LinkConfig(baudrate=baud, window=window),
        mode=mode,
    )
    console.print(
        f"cloud done: {result['batches_trained_cloud']} batches trained, "
        f"{result['bytes_up'] / 1e6:.2f} MB received"
    )


COMMANDS = [serve_cmd]
