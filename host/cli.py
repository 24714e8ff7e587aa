"""hostctl: the host's command line. Thin: each command hands off to its subpackage."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console

from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.link import LinkError
from edge_runtime.modes import LINK_MODE_NAMES, MODE_NAMES, mode_spec
from edge_runtime.statefile import StateError
from host.cli_options import link_options

console = Console(stderr=True)


def stdout_console() -> Console:
    """Tables go to stdout; when piped, wide enough that a split table does not wrap."""
    return Console(width=None if sys.stdout.isatty() else 160)


class UsageFault(click.ClickException):
    """A usage error: one line naming what is wrong and what is valid; exit 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        click.echo(f"hostctl: error: {self.message}", err=True)


class RuntimeFault(click.ClickException):
    """A runtime failure with its cause; exit 1."""

    exit_code = 1

    def show(self, file=None) -> None:  # noqa: ARG002
        click.echo(f"hostctl: failed: {self.message}", err=True)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'3x32x32' or '3,32,32' -> (3, 32, 32)."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise UsageFault(
            f"--input-shape {text!r}: expected C x H x W with positive integers, e.g. 3x32x32"
        )
    return dims  # type: ignore[return-value]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM ends the body as Ctrl-C does, so its cleanup runs (an emulated link's network
    namespaces are not removed at exit after a plain SIGTERM)."""

    def interrupt(signum: int, frame: object) -> None:  # noqa: ARG001 - signal's signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_link(link: str, emulation: str, mode: str = "hierarchical") -> None:
    """--link and --link-emulation of demo and bench: a usage error if either cannot run."""
    from host.demo.links import EmulationUnavailable, choose_emulation
    from host.linkemu import LinkSpecError, parse_link

    try:
        profile = parse_link(link)
        if mode_spec(mode).needs_link:
            choose_emulation(profile, emulation)
    except (LinkSpecError, EmulationUnavailable) as exc:
        raise UsageFault(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Hierarchical training with early exits: export, serve, demo, bench, deploy."""


@cli.command()
@click.option(
    "--model",
    default="resnet18",
    show_default=True,
    help="zoo name (resnet18, vgg16, smallcnn), path/to/file.py:factory or package.module:factory",
)
@click.option("--split", type=int, required=True, help="number of blocks on the edge")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="bundle directory [default: artifacts/<model>-split<N>]",
)
@click.option("--num-classes", type=int, default=10, show_default=True)
@click.option("--input-shape", default="3x32x32", show_default=True, help="C x H x W")
@click.option(
    "--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True
)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option(
    "--exit-head",
    "exit_head",
    type=int,
    default=None,
    help="width of the early-exit head's conv [default: activation channels, at most 128]",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="pre-shared link key to write into the bundle [default: a fresh random key]",
)
@click.option("--seed", type=int, default=0, show_default=True)
def export(
    model: str,
    split: int,
    out: Path | None,
    num_classes: int,
    input_shape: str,
    optimizer: str,
    lr: float,
    weight_decay: float,
    exit_head: int | None,
    key_file: Path | None,
    seed: int,
) -> None:
    """Split a model and write the edge's ONNX Runtime training artifacts and the cloud's tail."""
    from host.export import ExportOptions, default_out_dir, export_bundle
    from models import ModelSpecError

    opts = ExportOptions(
        model=model,
        split=split,
        input_shape=parse_input_shape(input_shape),
        num_classes=num_classes,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        exit_head_width=exit_head,
        seed=seed,
        key_file=key_file,
    )
    out = out or default_out_dir(opts)
    try:
        with console.status("exporting") as status:
            manifest = export_bundle(opts, out, progress=lambda msg: status.update(msg))
    except ModelSpecError as exc:
        raise UsageFault(str(exc)) from None
    bundle = load_bundle(manifest.parent)
    from host.export.inspect import bundle_view

    stdout_console().print(bundle_view(bundle))
    click.echo(f"wrote {manifest.parent} in {bundle.manifest['export_seconds']:.1f} s")


@cli.command()
@click.argument("bundle_dir", required=False, type=click.Path(path_type=Path))
@click.option("--model", default=None, help="show the split table of a model instead of a bundle")
@click.option("--num-classes", type=int, default=10, show_default=True)
@click.option("--input-shape", default="3x32x32", show_default=True)
def inspect(bundle_dir: Path | None, model: str | None, num_classes: int, input_shape: str) -> None:
    """Summarise a bundle, or (with --model) print every split point's costs."""
    from host.export.inspect import bundle_view, split_table_view

    out = stdout_console()
    if model is not None:
        from models import ModelSpecError, build_model, split_table

        try:
            m = build_model(
                model, input_shape=parse_input_shape(input_shape), num_classes=num_classes
            )
        except ModelSpecError as exc:
            raise UsageFault(str(exc)) from None
        out.print(split_table_view(model, split_table(m)))
        return
    if bundle_dir is None:
        raise UsageFault("inspect needs a bundle directory or --model NAME")
    bundle = load_bundle(bundle_dir)
    out.print(bundle_view(bundle))
    from models import build_model, split_table

    m = bundle.manifest
    if ":" not in m["model"]:
        out.print(
            split_table_view(
                m["model"], split_table(build_model(m["model_spec"])), chosen=m["split"]
            )
        )


@cli.command("serve")
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
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None)
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
    from edge_runtime.bundle import read_key_file
    from edge_runtime.link import LinkConfig
    from host.cloud.serve import serve

    if (listen is None) == (serial is None):
        raise UsageFault("serve needs exactly one of --listen tcp://HOST:PORT or --serial DEVICE")
    bundle = load_bundle(bundle_dir)
    if bundle.side == "edge":
        raise UsageFault(f"--bundle {bundle_dir}: give the bundle directory or its cloud/ half")
    key = read_key_file(key_file) if key_file else bundle.key()
    try:
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
            console=console,
            mode=mode,
        )
    except ValueError as exc:
        raise UsageFault(str(exc)) from None
    console.print(
        f"cloud done: {result['batches_trained_cloud']} batches trained, "
        f"{result['bytes_up'] / 1e6:.2f} MB received"
    )


@cli.command()
@link_options
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(MODE_NAMES),
    default="hierarchical",
    show_default=True,
)
@click.option("--data", default="synthetic:6000", show_default=True)
@click.option(
    "--codec", type=click.Choice(["fp32", "fp16", "int8"]), default="int8", show_default=True
)
@click.option(
    "--engine", type=click.Choice(["auto", "ort", "torch"]), default="auto", show_default=True
)
@click.option(
    "--work-dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=None,
    help="[default: <work-dir>/report.json]",
)
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="use this bundle instead of exporting the small model",
)
def demo(
    link: str,
    link_emulation: str,
    epochs: int,
    mode: str,
    data: str,
    codec: str,
    engine: str,
    work_dir: Path,
    report_path: Path | None,
    bundle_dir: Path | None,
) -> None:
    """Everything on one machine: export, cloud, edge over a 3G-like link, and a report."""
    from host.demo import DemoOptions, run_demo

    check_link(link, link_emulation, mode)
    opts = DemoOptions(
        link=link,
        link_emulation=link_emulation,
        epochs=epochs,
        mode=mode,
        data=data,
        codec=codec,
        engine=engine,
        work_dir=work_dir,
        report=report_path,
        bundle=bundle_dir,
    )
    try:
        with sigterm_as_interrupt():
            run_demo(opts, stdout_console())
    except RuntimeError as exc:
        raise RuntimeFault(str(exc)) from None


# -- getting the edge onto a board (host/deploy) ------------------------------------------


@cli.command("bundle")
@click.option("--board", "board_file", required=True, type=click.Path(path_type=Path))
@click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the export bundle (DIR or DIR/edge)",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="deploy bundle directory [default: artifacts/deploy-<board name>]",
)
@click.option(
    "--skip-deps",
    is_flag=True,
    help="only the edge artifacts and the hiertrain wheel; the board brings the dependencies",
)
def bundle_cmd(board_file: Path, bundle_dir: Path, out: Path | None, skip_deps: bool) -> None:
    """An offline deploy bundle for a board: edge artifacts, wheels, sha256 manifest."""
    from host.deploy import BoardError, DeployError
    from host.deploy.commands import bundle_command

    try:
        bundle_command(board_file, bundle_dir, out, skip_deps, console)
    except BoardError as exc:
        raise UsageFault(str(exc)) from None
    except DeployError as exc:
        raise RuntimeFault(str(exc)) from None


@cli.command("deploy")
@click.option("--board", "board_file", required=True, type=click.Path(path_type=Path))
@click.option(
    "--bundle",
    "deploy_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="a deploy bundle from `hostctl bundle`",
)
@click.option("--systemd", is_flag=True, help="also write a systemd unit for the edge runtime")
def deploy_cmd(board_file: Path, deploy_dir: Path, systemd: bool) -> None:
    """Copy what changed to the board, install it offline, verify, switch `current`."""
    from host.deploy import BoardError, DeployError
    from host.deploy.commands import deploy_command

    try:
        deploy_command(board_file, deploy_dir, systemd, console)
    except BoardError as exc:
        raise UsageFault(str(exc)) from None
    except DeployError as exc:
        raise RuntimeFault(str(exc)) from None


# Commands that live with their job's subpackage: each module has COMMANDS, a list of click
# commands. Add a line here when a job gets its own commands module.
JOB_COMMANDS = (
    "host.bench.commands",
    "host.hil.commands",
    "host.plan.commands",
    "host.privacy.commands",
)


def _register_job_commands() -> None:
    for name in JOB_COMMANDS:
        for command in importlib.import_module(name).COMMANDS:
            cli.add_command(command)


def main() -> None:
    """Entry point: typed errors become one line and an exit code, never a traceback."""
    _register_job_commands()
    try:
        code = cli.main(standalone_mode=False)  # ctx.exit(n) comes back as n here
    except click.exceptions.Abort:
        click.echo("hostctl: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (BundleError, LinkError, StateError, OSError) as exc:
        click.echo(f"hostctl: failed: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("hostctl: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
