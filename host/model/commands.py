"""`hostctl model`: the trained model from checkpoints, when a run ended without `--model-out`
(killed, board unreachable). Imports torch only inside the command."""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.errors import UsageFault


@click.command("model")
@click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the run's bundle directory (DIR or DIR/cloud)",
)
@click.option(
    "--edge-checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="the edge's engine checkpoint (engine.ckpt in its work dir; ort or torch engine)",
)
@click.option(
    "--host-state",
    required=True,
    type=click.Path(path_type=Path),
    help="the host's --state-dir (tail checkpoints)",
)
@click.option(
    "--edge-id", default=None, help="which edge's tail, where the state dir holds several"
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="the model directory")
@click.option(
    "--data",
    "data_spec",
    default=None,
    help="validate on this data set's held-out samples [default: seeded Gaussian inputs]",
)
def model_cmd(
    bundle_dir: Path,
    edge_checkpoint: Path,
    host_state: Path,
    edge_id: str | None,
    out: Path,
    data_spec: str | None,
) -> None:
    """Assemble edge.onnx, tail.onnx, full.onnx, model.pt and model.json from checkpoints."""
    from edge_runtime.bundle import load_bundle
    from host.model.collect import held_out_samples, model_out, parts_from_checkpoints

    bundle = load_bundle(bundle_dir)
    if bundle.side == "edge":
        raise UsageFault(f"--bundle {bundle_dir}: give the bundle directory or its cloud/ half")
    # The data first: a --data that does not fit is a usage error before the checkpoints load.
    shape = bundle.manifest["input_shape"]
    samples = held_out_samples(data_spec, input_shape=shape) if data_spec else None
    parts = parts_from_checkpoints(bundle, edge_checkpoint, host_state, edge_id)
    model_out(parts, out, samples, say=click.echo)


COMMANDS = [model_cmd]
