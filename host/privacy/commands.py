"""`hostctl privacy audit` and `hostctl privacy epsilon`.

Imports torch and the accountant only inside the commands: `hostctl --help` loads this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edge_runtime.errors import UsageFault
from edge_runtime.link.codecs import CODECS
from edge_runtime.privacy import (
    ActivationNoise,
    PrivacyOptionError,
    check_clip,
    check_noise_multiplier,
)
from host.console import console, stdout_console
from host.privacy import DEFAULT_DELTA


def activation_noise(dp_clip: float | None, dp_noise: float | None) -> ActivationNoise | None:
    """--dp-clip / --dp-noise as the edge's defence, or a usage error naming the valid range."""
    if dp_clip is None and dp_noise is None:
        return None
    if dp_clip is None:
        raise UsageFault("--dp-noise needs --dp-clip: the noise's std is DP_NOISE x DP_CLIP")
    noise = 0.0 if dp_noise is None else dp_noise
    for flag, check, value in (
        ("--dp-clip", check_clip, dp_clip),
        ("--dp-noise", check_noise_multiplier, noise),
    ):
        try:
            check(value)
        except PrivacyOptionError as exc:
            raise UsageFault(f"{flag}: {exc}") from None
    return ActivationNoise(dp_clip, noise)


def _names(text: str, valid: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [n for n in names if n not in valid]
    if not names or bad:
        raise UsageFault(
            f"{flag} {text!r}: give one or more of {', '.join(valid)}, comma separated"
        )
    return names


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise UsageFault(f"--delta must be in (0, 1), got {delta}")


@click.group("privacy")
def privacy() -> None:
    """What an attacker can rebuild from the link, and what the noise defence guarantees."""


@privacy.command("audit")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_spec", required=True, help="the victim's data set (a --data SPEC)")
@click.option(
    "--codec",
    "codecs",
    default="fp32,int8",
    show_default=True,
    help=f"codec(s) the activations cross the link with: {', '.join(CODECS)}",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="the trained front: an edge checkpoint (engine.ckpt in the edge's --work-dir, either "
    "engine) [default: the audit trains the front itself for --train-epochs]",
)
@click.option("--train-epochs", type=click.IntRange(min=0), default=3, show_default=True)
@click.option(
    "--adv-lambda",
    type=float,
    default=None,
    help="train the front in the audit with PriPHiT's adversarial exit of this weight (>= 0)",
)
@click.option(
    "--stages",
    default="initial,trained",
    show_default=True,
    help="which fronts to attack: initial (the bundle's), trained",
)
@click.option("--dp-clip", type=float, default=None, help="defence: clip norm (> 0)")
@click.option("--dp-noise", type=float, default=None, help="defence: noise multiplier (>= 0)")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="epochs of the run to account for (each one releases every sample once)",
)
@click.option("--delta", type=float, default=DEFAULT_DELTA, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--victims",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="victim samples to attack",
)
@click.option(
    "--aux-fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="share of the train split the attacker holds (disjoint from the victim's)",
)
@click.option("--decoder-epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--decoder-width", type=click.IntRange(min=2), default=64, show_default=True)
@click.option(
    "--whitebox-steps",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="white-box optimisation steps (0: skip the white-box attack)",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="train samples to use")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="[default: all cores]")
@click.option(
    "--model-out",
    type=click.Path(path_type=Path),
    default=None,
    help="write the attacker's decoders and the attacked fronts here",
)
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="write reconstructions.png (originals next to reconstructions) and audit.json here",
)
def audit(
    bundle_dir: Path,
    data_spec: str,
    codecs: str,
    checkpoint: Path | None,
    train_epochs: int,
    adv_lambda: float | None,
    stages: str,
    dp_clip: float | None,
    dp_noise: float | None,
    epochs: int,
    delta: float,
    batch_size: int,
    victims: int,
    aux_fraction: float,
    decoder_epochs: int,
    decoder_width: int,
    whitebox_steps: int,
    limit: int | None,
    seed: int,
    threads: int | None,
    model_out: Path | None,
    report_path: Path | None,
    out_dir: Path | None,
) -> None:
    """Attack what crosses the link: learned inversion and white-box, PSNR/SSIM vs the mean image."""
    import torch

    from host.privacy import attacks
    from host.privacy.audit import STAGES, AuditOptions, run_audit
    from host.privacy.report import audit_table
    from models import ModelSpecError

    _check_delta(delta)
    if adv_lambda is not None:
        from edge_runtime.privacy import check_lambda

        try:
            check_lambda(adv_lambda)
        except ValueError as exc:
            raise UsageFault(f"--adv-lambda: {exc}") from None
        if checkpoint is not None:
            raise UsageFault("--adv-lambda trains the front in the audit: drop --checkpoint")
    opts = AuditOptions(
        bundle=bundle_dir,
        data_spec=data_spec,
        codecs=_names(codecs, CODECS, "--codec"),
        noise=activation_noise(dp_clip, dp_noise),
        checkpoint=checkpoint,
        train_epochs=train_epochs,
        adv_lambda=adv_lambda,
        epochs=epochs,
        delta=delta,
        batch_size=batch_size,
        victims=victims,
        aux_fraction=aux_fraction,
        decoder=attacks.DecoderTraining(epochs=decoder_epochs, width=decoder_width),
        whitebox=attacks.WhiteBoxSettings(steps=whitebox_steps) if whitebox_steps else None,
        stages=_names(stages, STAGES, "--stages"),
        seed=seed,
        limit=limit,
        grid_path=out_dir / "reconstructions.png" if out_dir else None,
        model_out=model_out,
    )
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        with console.status("auditing") as status:
            report = run_audit(opts, progress=lambda msg: status.update(msg))
    except (ModelSpecError, ValueError) as exc:  # bad options or data (DataError is a usage fault)
        if isinstance(exc, UsageFault):
            raise
        raise UsageFault(str(exc)) from None
    stdout_console().print(audit_table(report))
    for stage, row in report["best"].items():
        click.echo(
            f"best attack on the {stage} front: {row['attack']} over {row['codec']}, "
            f"{row['psnr']:.2f} dB ({row['psnr_over_baseline']:+.2f} dB over the mean image), "
            f"SSIM {row['ssim']:.3f}"
        )
    if report["defence"]:
        d = report["defence"]
        click.echo(
            f"defence: clip {d['dp_clip']}, noise {d['dp_noise']}: epsilon {d['epsilon']:.3g}"
        )
    from edge_runtime.report import write_report

    for path in filter(None, (report_path, out_dir / "audit.json" if out_dir else None)):
        write_report(path, report)
        click.echo(f"wrote {path}")
    if "grid" in report:
        click.echo(f"wrote {report['grid']}")


@privacy.command("epsilon")
@click.option("--dp-clip", type=float, default=1.0, show_default=True, help="clip norm (> 0)")
@click.option("--dp-noise", type=float, required=True, help="noise multiplier (>= 0)")
@click.option("--epochs", type=click.IntRange(min=1), required=True)
@click.option("--delta", type=float, default=DEFAULT_DELTA, show_default=True)
def epsilon(dp_clip: float, dp_noise: float, epochs: int, delta: float) -> None:
    """(epsilon, delta) of a run with edge-runtime's --dp-clip/--dp-noise over EPOCHS epochs."""
    _check_delta(delta)
    noise = activation_noise(dp_clip, dp_noise)
    assert noise is not None  # both options are set here
    from host.privacy.accounting import privacy_figures

    figures = privacy_figures(noise.clip, noise.noise_multiplier, epochs, delta)
    click.echo(json.dumps(figures, indent=2))


COMMANDS = [privacy]
