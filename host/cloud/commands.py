"""`hostctl serve`: the cloud trainer, from the command line.

Imports torch only inside the command: `hostctl --help` loads this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_runtime.command_line import logging_options, report_option
from edge_runtime.errors import UsageFault
from edge_runtime.modes import LINK_MODE_NAMES, mode_spec
from host.console import console

if TYPE_CHECKING:
    from host.cloud.ranks import RankOptions


@click.command("serve")
@click.option(
    "--bundle",
    "bundle_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="the bundle directory (DIR or DIR/cloud); training needs it",
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
@report_option(help="write the cloud's JSON report here (with --infer: the inference host's)")
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
@click.option(
    "--shared-key/--board-keys",
    default=True,
    show_default=True,
    help="let in the bundle's own key (one board, or boards you trust to claim any edge id), "
    "or only per-board keys from `hostctl key issue`",
)
@click.option(
    "--shared-tail",
    is_flag=True,
    help="train one tail on every edge's activations (each edge's accounting stays its own)",
)
@click.option(
    "--ranks",
    type=click.IntRange(min=1),
    default=None,
    help="with --shared-tail: train the tail data-parallel on N torch.distributed ranks "
    "(torchrun, gloo; even N=1 runs under torchrun); rank r listens on the --listen port + r "
    "[default: one process, no torchrun]",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="with --ranks: torchrun's elastic restarts of the ranks after a rank dies",
)
@click.option(
    "--nnodes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="with --ranks: machines the ranks span, each running this command with the same "
    "--ranks, --nnodes, --rdzv-endpoint and --listen port (global rank r listens on PORT + r)",
)
@click.option(
    "--node-rank",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="with --nnodes: this machine's place, 0 to M-1; its ranks are K*N to K*N+N-1",
)
@click.option(
    "--rdzv-endpoint",
    default=None,
    metavar="HOST:PORT",
    help="with --nnodes: where the nodes meet (node 0 hosts torchrun's static rendezvous)",
)
@click.option(
    "--rdzv-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="with --nnodes: seconds to wait for the rendezvous endpoint and the other nodes",
)
@click.option(
    "--expect-edges",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="edges started together: --exit-when-done exits only after this many connected, "
    "and front averaging's rounds wait (up to --round-timeout) until this many joined",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="with --ranks: where the ranks train (cuda with nccl is not built yet)",
)
@click.option("--rank-hashes", is_flag=True, hidden=True, help="hash the tail every step")
@click.option(
    "--average-fronts-every",
    "average_every",
    default=None,
    metavar="N{batches|epochs}",
    help="with --shared-tail: average the edges' fronts (FedAvg, weighted by samples) every N "
    "batches or epochs of each edge, and at the end of training",
)
@click.option(
    "--round-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="with --average-fronts-every: seconds a round waits for its slowest edge before it "
    "closes with the fronts it has",
)
@click.option("--baud", type=int, default=115200, show_default=True)
@click.option("--window", type=int, default=16, show_default=True)
@click.option(
    "--model-out",
    type=click.Path(path_type=Path),
    default=None,
    help="write the trained model here at the end (edge/tail/full.onnx, model.pt, model.json)",
)
@click.option(
    "--infer",
    is_flag=True,
    help="serve hierarchical inference on a trained model (--model DIR) instead of training",
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="with --infer: the model directory (--model-out of a run)",
)
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
    shared_key: bool,
    shared_tail: bool,
    ranks: int | None,
    max_restarts: int,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    rdzv_timeout: float,
    expect_edges: int,
    device: str,
    rank_hashes: bool,
    average_every: str | None,
    round_timeout: float,
    baud: int,
    window: int,
    model_out: Path | None,
    infer: bool,
    model_dir: Path | None,
) -> None:
    """The cloud trainer: train each edge's tail on the activations it streams.

    With --infer: answer the samples edges offload, with the trained model's tail."""
    from edge_runtime.bundle import load_bundle, read_key_file
    from edge_runtime.link import LinkConfig
    from edge_runtime.train.averaging import AveragingSchedule
    from host.cloud.modes import host_mode
    from host.cloud.serve import parse_listen, serve

    if shared_tail and not host_mode(mode).trains_tail:
        raise UsageFault(f"--shared-tail: mode {mode!r} trains no tail to share")
    if model_out is not None and not infer and not mode_spec(mode).scores_exit:
        # As demo says it: the run would end well and then fail for want of an edge model.
        raise UsageFault(f"--mode {mode} trains no early exit: --model-out needs one")
    schedule = None
    if average_every is not None:
        try:
            schedule = AveragingSchedule.parse(average_every)
        except ValueError as exc:
            raise UsageFault(str(exc)) from None
        if not shared_tail or not host_mode(mode).averages_fronts:
            raise UsageFault(
                "--average-fronts-every needs --shared-tail and --mode hierarchical "
                "(the edges' own fronts are what is averaged)"
            )
    if (listen is None) == (serial is None):
        raise UsageFault("serve needs exactly one of --listen tcp://HOST:PORT or --serial DEVICE")
    if listen is not None:
        parse_listen(listen)  # a bad address is a usage error before the tail is built
    if infer:
        from edge_runtime.bundle import KEY_FILE
        from edge_runtime.infer.model_dir import TAIL_ONNX, read_model_dir
        from host.infer.server import serve_infer

        if model_dir is None or bundle_dir is not None:
            given = "not --bundle" if bundle_dir is not None else "which is missing"
            raise UsageFault(f"serve --infer takes --model DIR (the --model-out of a run), {given}")
        # Not a model directory: that, not a missing key, is the line.
        read_model_dir(model_dir, needs=(TAIL_ONNX,))
        serve_infer(
            model_dir,
            listen=listen,
            serial=serial,
            key=read_key_file(key_file or model_dir / KEY_FILE),
            config=LinkConfig(baudrate=baud, window=window),
            exit_when_done=exit_when_done,
            report_path=report_path,
            link_label=link_label,
            say=console.print,
        )
        return
    if bundle_dir is None or model_dir is not None:
        raise UsageFault("serve needs --bundle DIR (or --infer --model DIR to serve inference)")
    bundle = load_bundle(bundle_dir)
    if bundle.side == "edge":
        raise UsageFault(f"--bundle {bundle_dir}: give the bundle directory or its cloud/ half")
    if ranks is not None:
        from host.cloud.ranks import RankOptions

        host, port = parse_listen(listen) if listen is not None else ("", 0)
        opts = RankOptions(
            bundle_dir=bundle.root,
            state_dir=state_dir,
            host=host,
            port=port,
            ranks=ranks,
            max_restarts=max_restarts,
            key_file=key_file,
            checkpoint_every=checkpoint_every,
            metrics_csv=metrics_csv,
            window=window,
            shared_key=shared_key,
            exit_when_done=exit_when_done,
            expect_edges=expect_edges,
            hashes=rank_hashes,
            device=device,
            model_out=model_out,
            nnodes=nnodes,
            node_rank=node_rank,
            rdzv_endpoint=rdzv_endpoint,
            rdzv_timeout=rdzv_timeout,
        )
        if schedule is not None:
            raise UsageFault("--average-fronts-every is not built for --ranks yet")
        _serve_ranks(
            opts,
            shared_tail=shared_tail,
            mode=mode,
            listen=listen,
            report=report_path,
        )
        return
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
        shared_key=shared_key,
        model_out=model_out,
        shared_tail=shared_tail,
        average_fronts=schedule,
        round_timeout=round_timeout,
        expect_edges=expect_edges,
    )
    if result["shared_tail"] is not None:
        edges = ", ".join(e["edge_id"] for e in result["shared_tail"]["edges"]) or "none"
        console.print(
            f"shared tail: {result['shared_tail']['steps']} optimizer steps from edges {edges}"
        )
        averaging = result["shared_tail"].get("front_averaging")
        if averaging is not None:
            console.print(
                f"front averaging ({averaging['schedule']}): version {averaging['version']}, "
                f"{averaging['bytes_up'] / 1e6:.2f} MB of fronts up, "
                f"{averaging['bytes_down'] / 1e6:.2f} MB of averages down"
            )
    console.print(
        f"cloud done: {result['batches_trained_cloud']} batches trained, "
        f"{result['bytes_up'] / 1e6:.2f} MB received"
    )


def _serve_ranks(
    opts: RankOptions,
    *,
    shared_tail: bool,
    mode: str,
    listen: str | None,
    report: Path | None,
) -> None:
    """`serve --ranks N`: the shared tail on N ranks (host/cloud/ranks.py)."""
    from host.cloud.edge_state import check_state_dir
    from host.cloud.ranks import serve_ranks

    if not shared_tail or mode != "hierarchical":
        raise UsageFault("--ranks trains a shared tail: give --shared-tail (mode hierarchical)")
    if listen is None:
        raise UsageFault("--ranks serves TCP only (--listen tcp://HOST:PORT)")
    check_state_dir(opts.state_dir, shared=True)  # a damaged checkpoint: one line, now
    result = serve_ranks(opts, report)
    shared = result.get("shared_tail") or {}
    console.print(
        f"ranks done: {shared.get('steps')} batches in the shared tail from "
        f"{len(shared.get('edges', []))} edges on {opts.ranks} ranks"
        + (f" (node {opts.node_rank} of {opts.nnodes})" if opts.nnodes > 1 else "")
    )


COMMANDS = [serve_cmd]
