"""`hostctl export` and `hostctl inspect`: make a bundle, and say what is in one.

Imports torch only inside the commands: `hostctl --help` loads this module.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.errors import UsageFault
from host.cli_options import (
    input_shape_option,
    lr_schedule_option,
    model_option,
    num_classes_option,
)
from host.console import console, stdout_console


@click.command()
@model_option(default="resnet18")
@click.option("--split", type=int, required=True, help="number of blocks on the edge")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="bundle directory [default: artifacts/<model>-split<N>]",
)
@num_classes_option
@input_shape_option
@click.option(
    "--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True
)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@lr_schedule_option("the learning rate per epoch, for both halves")
@click.option(
    "--classes",
    default=None,
    help="the model's class names in label order, comma-separated (as many as --num-classes): "
    "edges' folder:DIR data is then labelled by folder name, the same on every board "
    "[default: none: a folder's labels are its own sorted order]",
)
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
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="start from these weights: model.pt of a run, or a whole-model state dict (.pt)",
)
@click.option(
    "--engine",
    "engine",
    type=click.Choice(["ort", "torch"]),
    default="ort",
    show_default=True,
    help="ort: ONNX Runtime training artifacts too (both engines train the bundle); "
    "torch: only what the torch engine needs (for ops ORT training cannot differentiate)",
)
@click.option("--force", is_flag=True, help="replace the bundle at --out (its link key is kept)")
@click.option(
    "--new-key", is_flag=True, help="with --force: a fresh link key (re-deploy the board)"
)
@click.option(
    "--include",
    "includes",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="a module file or package directory the model's code imports (repeatable); "
    "modules beside the factory file are found by themselves",
)
@click.option(
    "--requires",
    multiple=True,
    help="a pip requirement the model's code needs on the board, e.g. 'timm==1.0.9' "
    "(repeatable; `hostctl bundle` fetches its wheels)",
)
@click.option(
    "--baselines",
    is_flag=True,
    help="also what the baseline modes need (--mode split, cloud, edge on serve and "
    "edge-runtime run): split learning's front artifacts, the whole network's weights",
)
@click.option("--no-validate", is_flag=True, help="skip comparing the ONNX models with torch")
@click.option(
    "--dp-clip",
    type=float,
    default=None,
    help="privacy default for the edge run: clip each sample's activation to this L2 norm "
    "(> 0; pick about the activations' median norm) [default: no clipping]",
)
@click.option(
    "--dp-noise",
    type=float,
    default=None,
    help="privacy default: Gaussian noise of std DP_NOISE x DP_CLIP (>= 0; needs --dp-clip) "
    "[default: none]",
)
@click.option(
    "--adv-lambda",
    type=float,
    default=None,
    help="privacy default: PriPHiT's adversarial exit with this weight (>= 0; the edge then "
    "trains with the torch engine) [default: none]",
)
def export(
    model: str,
    split: int,
    out: Path | None,
    num_classes: int,
    input_shape: tuple[int, int, int],
    optimizer: str,
    lr: float,
    weight_decay: float,
    lr_schedule: str,
    classes: str | None,
    exit_head: int | None,
    key_file: Path | None,
    seed: int,
    weights: Path | None,
    engine: str,
    force: bool,
    new_key: bool,
    includes: tuple[Path, ...],
    requires: tuple[str, ...],
    baselines: bool,
    no_validate: bool,
    dp_clip: float | None,
    dp_noise: float | None,
    adv_lambda: float | None,
) -> None:
    """Split a model, write the edge's training artifacts and the cloud's tail, and validate
    every ONNX model against torch (exit 1, --out as it was, when one disagrees)."""
    from edge_runtime.bundle import load_bundle
    from host.export import ExportOptions, default_out_dir, export_bundle
    from host.export.inspect import bundle_view

    if new_key and not force:
        raise UsageFault("--new-key replaces the key of an existing bundle: use it with --force")
    from edge_runtime.privacy import PrivacyOptionError, defence_entry

    try:  # the edge's own checks: the same ranges, the same words
        privacy = defence_entry(dp_clip, dp_noise, adv_lambda)
    except PrivacyOptionError as exc:
        raise UsageFault(str(exc)) from None
    opts = ExportOptions(
        model=model,
        split=split,
        input_shape=input_shape,
        num_classes=num_classes,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        classes=_class_names(classes, num_classes),
        exit_head_width=exit_head,
        seed=seed,
        key_file=key_file,
        weights=weights,
        engine=engine,
        force=force,
        new_key=new_key,
        includes=list(includes),
        requires=list(requires),
        baselines=baselines,
        validate=not no_validate,
        privacy=privacy,
    )
    out = out or default_out_dir(opts)
    with console.status("exporting") as status:
        manifest = export_bundle(
            opts,
            out,
            progress=lambda msg: status.update(msg),
            report=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
        )
    bundle = load_bundle(manifest.parent)
    stdout_console().print(bundle_view(bundle))
    click.echo(f"wrote {manifest.parent} in {bundle.manifest['export_seconds']:.1f} s")


@click.command()
@click.argument("bundle_dir", required=False, type=click.Path(path_type=Path))
@model_option(default=None, show_default=False)
@num_classes_option
@input_shape_option
def inspect(
    bundle_dir: Path | None, model: str | None, num_classes: int, input_shape: tuple[int, int, int]
) -> None:
    """Summarise a bundle, or (with --model) print every split point's costs."""
    from edge_runtime.bundle import load_bundle
    from host.export.inspect import bundle_view, split_table_view

    out = stdout_console()
    if model is not None:
        from models import build_model, split_table

        m = build_model(model, input_shape=input_shape, num_classes=num_classes)
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


COMMANDS = [export, inspect]


def _class_names(text: str | None, num_classes: int) -> tuple[str, ...] | None:
    """--classes: distinct non-empty names, one per class; a UsageFault naming what is wrong."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if len(names) != num_classes or not all(names) or len(set(names)) != len(names):
        raise UsageFault(
            f"--classes {text!r}: give {num_classes} distinct non-empty names, comma-separated, "
            f"one per class of --num-classes {num_classes} (got {len(names)})"
        )
    return names
