"""edge-runtime: what runs on the board. `edge-runtime run --bundle DIR/edge --connect URL ...`

Commands raise typed errors (edge_runtime.errors); the group maps every one to a line and an
exit code (edge_runtime/command_line.py), as hostctl's does.
"""

from __future__ import annotations

import logging
import math
import secrets
import shutil
import socket
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edge_runtime.agent import run_agent
from edge_runtime.bundle import (
    check_data_fits,
    class_numbering_note,
    fit_class_names,
    load_bundle,
    read_key_file,
)
from edge_runtime.command_line import (
    PROGRESS,
    CommandGroup,
    Throttle,
    logging_options,
    report_option,
    run_cli,
    version_option,
)
from edge_runtime.data import DATA_SPEC_HELP, Dataset, load_dataset
from edge_runtime.engines import ENGINE_CHOICES, make_engine
from edge_runtime.errors import HiertrainError, Interrupted, UsageFault
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.link.codecs import BY_NAME, CODECS
from edge_runtime.link.transports import check_url
from edge_runtime.model_messages import model_meta
from edge_runtime.modes import MODE_NAMES, MODES, mode_spec
from edge_runtime.privacy import (
    ActivationNoise,
    PrivacyOptionError,
    check_clip,
    check_noise_multiplier,
)
from edge_runtime.report import write_report
from edge_runtime.statefile import held_directory
from edge_runtime.stop_signals import StopSignals
from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
from edge_runtime.train.pacing import pacing_clock

PROG = "edge-runtime"
# soft_wrap: a message is one line in a log or a pipe, whatever the width (rich wraps at 80
# columns where stderr is not a terminal; a terminal wraps long lines by itself).
console = Console(stderr=True, soft_wrap=True, emoji=False)
log = logging.getLogger("hiertrain.edge")

# Options both commands take, declared once (click.option returns a reusable decorator).
edge_id_option = click.option(
    "--edge-id", default=None, help="this board's name [default: hostname]"
)
baud_option = click.option(
    "--baud", type=int, default=115200, show_default=True, help="serial links only"
)


@click.group(cls=CommandGroup, prog=PROG)
@version_option(PROG)
def cli() -> None:
    """The edge side of hierarchical training: trains the front, streams activations."""


# RunProgress.extra: the bundle a run started with (Bundle.identity), for --resume to compare.
BUNDLE_KEY = "bundle"
# RunProgress.extra: the --seed a run started with (its shuffle and augmentation), likewise.
SEED_KEY = "seed"


def _prepare_work_dir(
    work_dir: Path, resume: bool, fresh: bool, run_id: str | None, bundle: dict, seed: int
) -> RunProgress:
    existing = None if fresh else RunProgress.load(work_dir)
    if resume:
        if existing is None:
            raise UsageFault(f"--resume: {work_dir} holds no run to resume")
        _check_same_bundle(existing, bundle, work_dir)
        existing.check_engine_checkpoint(work_dir)
        return existing
    if existing is not None and not existing.started and not _spooled(work_dir):
        # A run that trained nothing (a failed connect, say) does not block the next one.
        log.info("%s: run %s never started; starting a new run", work_dir, existing.run_id)
        fresh = True
    elif existing is not None and not fresh:
        raise UsageFault(
            f"{work_dir} holds run {existing.run_id} at epoch {existing.epoch}: "
            "pass --resume to continue it or --fresh to discard it"
        )
    if fresh and work_dir.exists():
        # Emptied, not removed: the directory itself is what this process holds.
        for entry in work_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)
    progress = RunProgress(
        run_id or secrets.token_hex(4), extra={BUNDLE_KEY: bundle, SEED_KEY: seed}
    )
    progress.save(work_dir)
    return progress


def _check_same_data(progress: RunProgress, data: Dataset, seed: int, work_dir: Path) -> None:
    """UsageFault if the run was started on other data (another source, shape, classes, or
    train split: another file, --limit or --seed's subset) or with another --seed (another
    shuffle, on the same data): its batch ids (epoch, index) would name other samples, so the
    host's record would skip some and take others twice."""
    differs = []
    started_seed = progress.extra.get(SEED_KEY)  # None: a run from before the record
    if started_seed is not None and started_seed != seed:
        differs.append(f"--seed {started_seed} vs {seed}, another shuffle")
    started = progress.extra.get("model_meta")
    # No record: a run from before it, or one that never built its trainer.
    now = model_meta(data, 0) if started else {}
    for key, what in (("data", "data"), ("input_shape", "shape")):
        if started and started.get(key) != now[key]:
            differs.append(f"{what} {started.get(key)} vs {now[key]}")
    if started and started.get("classes") != now["classes"]:
        differs.append(f"classes {len(started.get('classes') or [])} vs {len(now['classes'])}")
    if started and not differs and started.get("normalisation") != now["normalisation"]:
        differs.append("train-split statistics (another file's content, --limit or --seed)")
    if differs:
        raise UsageFault(
            f"--resume: run {progress.run_id} in {work_dir} started on other data "
            f"({'; '.join(differs)}; the run's vs this one's): resume with the data, --limit "
            "and --seed it started with, or start over with --fresh"
        )


def _check_same_bundle(progress: RunProgress, bundle: dict, work_dir: Path) -> None:
    """UsageFault if the run was started with a bundle of another model, split or shape: its
    engine checkpoint would load into this one and fail at the first step ("feed names has
    35 elements, but feed has 30")."""
    started = progress.extra.get(BUNDLE_KEY)
    if not started or started == bundle:  # a run from before the record: nothing to compare
        return
    differs = ", ".join(
        f"{k} {started.get(k)} vs {bundle.get(k)}"
        for k in sorted(set(started) | set(bundle))
        if started.get(k) != bundle.get(k)
    )
    raise UsageFault(
        f"--resume: run {progress.run_id} in {work_dir} started with another bundle "
        f"({differs}; the run's vs this one's): resume with the bundle it started with, "
        "or start over with --fresh"
    )


def _spooled(work_dir: Path) -> bool:
    """Whether the spool holds anything a previous run sent (or could not send)."""
    spool = work_dir / "spool"
    return spool.is_dir() and any(spool.iterdir())


@cli.command()
@click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the bundle's edge directory (DIR/edge; DIR, the whole bundle, works too)",
)
@click.option(
    "--connect",
    "url",
    default=None,
    help="host link: socket://HOST:PORT (or tcp://), /dev/ttyUSB0, rfc2217://HOST:PORT, loop://",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.5),
    default=60.0,
    show_default=True,
    help="seconds to keep trying to reach the host before giving up",
)
@click.option(
    "--mode",
    type=click.Choice(MODE_NAMES),
    default="hierarchical",
    show_default=True,
    help="; ".join(MODES[m].summary for m in MODE_NAMES),
)
@click.option("--data", "data_spec", default="synthetic", show_default=True, help=DATA_SPEC_HELP)
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option(
    "--codec",
    type=click.Choice(list(CODECS)),
    default="fp32",
    show_default=True,
    help="activation encoding on the link",
)
@click.option(
    "--engine", type=click.Choice(list(ENGINE_CHOICES)), default="auto", show_default=True
)
@click.option("--threads", type=int, default=None, help="engine threads [default: all cores]")
@click.option("--augment/--no-augment", default=False, show_default=True)
@click.option(
    "--limit",
    type=int,
    default=None,
    help="train on N of the train samples only (a fixed random subset, chosen by --seed)",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--slowdown",
    type=click.FloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="board profile: pace each step to this many times its compute time here "
    "(with --threads 1 its CPU time, which load on this machine does not stretch)",
)
@edge_id_option
@click.option("--run-id", default=None, help="[default: random, kept across --resume]")
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="checkpoints, spool, metrics [default: runs/edge-<edge-id>]",
)
@click.option("--resume", is_flag=True, help="continue the run in --work-dir from its checkpoint")
@click.option("--fresh", is_flag=True, help="discard a previous run in --work-dir")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="pre-shared link key [default: the bundle's link.key]",
)
@baud_option
@click.option("--window", type=int, default=16, show_default=True)
@click.option(
    "--dp-clip",
    type=float,
    default=None,
    help="privacy: clip each sample's activation to this L2 norm (> 0) before the codec",
)
@click.option(
    "--dp-noise",
    type=float,
    default=None,
    help="privacy: add Gaussian noise of std DP_NOISE x DP_CLIP (>= 0; needs --dp-clip)",
)
@click.option(
    "--adv-lambda",
    type=float,
    default=None,
    help="privacy: PriPHiT's adversarial exit with this weight (>= 0; torch engine)",
)
@report_option()
@click.option(
    "--model-out",
    type=click.Path(path_type=Path),
    default=None,
    help="at the end, write the trained front + exit here (edge.onnx, edge.json)",
)
@logging_options
def run(
    bundle_dir: Path,
    url: str | None,
    connect_timeout: float,
    mode: str,
    data_spec: str,
    epochs: int,
    batch_size: int,
    eval_batch_size: int,
    codec: str,
    engine: str,
    threads: int | None,
    augment: bool,
    limit: int | None,
    seed: int,
    slowdown: float,
    edge_id: str | None,
    run_id: str | None,
    work_dir: Path | None,
    resume: bool,
    fresh: bool,
    key_file: Path | None,
    baud: int,
    window: int,
    dp_clip: float | None,
    dp_noise: float | None,
    adv_lambda: float | None,
    report_path: Path | None,
    model_out: Path | None,
) -> None:
    """Train the front + exit on local data and stream activations and labels to the host."""
    # First of all: a signal from here on is recorded, not raised into the imports below.
    signals = StopSignals(say=console.print)
    click.get_current_context().call_on_close(signals.restore)
    activation_noise = _activation_noise(dp_clip, dp_noise, mode)
    _check_adversarial_exit(adv_lambda, engine, mode)
    if model_out is not None and not mode_spec(mode).scores_exit:
        raise UsageFault(f"--mode {mode} trains no early exit: --model-out needs one")
    bundle = load_bundle(bundle_dir)
    if bundle.side == "all":  # the whole bundle, as serve takes it: the edge trains its half
        bundle = load_bundle(bundle.side_dir("edge"))
    if bundle.side != "edge":
        raise UsageFault(f"--bundle {bundle_dir}: give the bundle's edge directory (DIR/edge)")
    exported = bundle.manifest.get("privacy")
    if exported and mode == "hierarchical" and (dp_clip, dp_noise, adv_lambda) == (None,) * 3:
        # The defence `hostctl export` recorded applies unless this command line names one.
        dp_clip, dp_noise, adv_lambda = (
            exported.get(k) for k in ("dp_clip", "dp_noise", "adv_lambda")
        )
        log.info("privacy defence from the bundle: %s", exported)
        activation_noise = _activation_noise(dp_clip, dp_noise, mode)
        _check_adversarial_exit(adv_lambda, engine, mode)
    data = load_dataset(data_spec, seed=seed, limit=limit)  # a DataError is a usage error
    data = fit_class_names(data, bundle.manifest)
    check_data_fits(data, bundle.manifest)
    if (note := class_numbering_note(data, bundle.manifest)) is not None:
        log.warning("%s", note)
    if (note := data.one_class_note()) is not None:
        log.warning("%s", note)
    spec = mode_spec(mode)
    if not spec.needs_link:
        _run_alone(
            bundle, data, epochs, batch_size, seed, augment, threads, report_path, slowdown, signals
        )
        return
    if url is None:
        raise UsageFault(f"--mode {mode} needs --connect URL (socket://HOST:PORT or a device)")
    url = check_url(url)  # a form that cannot work is a usage error now, not after retries
    edge_id = edge_id or socket.gethostname()
    work_dir = work_dir or Path("runs") / f"edge-{edge_id}"
    # Held until the command ends: a second edge on this work dir (a --fresh one would empty
    # the live run's spool) is refused in one line.
    click.get_current_context().with_resource(held_directory(work_dir, "edge-runtime run"))
    progress = _prepare_work_dir(work_dir, resume, fresh, run_id, bundle.identity, seed)
    if resume:
        _check_same_data(progress, data, seed, work_dir)
    if resume and progress.epoch >= epochs and not _spooled(work_dir):
        console.print(
            f"run {progress.run_id} in {work_dir} finished its {progress.epoch} epochs "
            "and the host has everything: nothing to resume"
        )
        return
    if adv_lambda is not None:  # PriPHiT's adversarial exit: the torch engine's variant
        from edge_runtime.engines.adversarial import AdversarialTorchEngine

        eng = AdversarialTorchEngine(bundle, adv_lambda, noise=activation_noise, threads=threads)
    else:
        eng = (
            make_engine(engine, bundle, threads=threads, variant=spec.engine_variant)
            if spec.engine_variant
            else None
        )
    if resume and eng is not None:
        checkpoint = progress.check_engine_checkpoint(work_dir)
        if checkpoint is not None:
            eng.load_checkpoint(checkpoint)
        else:
            console.print(
                "no engine checkpoint yet: the front starts again from the bundle; "
                "the host's record skips the batches it trained"
            )
    key = read_key_file(key_file) if key_file else bundle.key()
    config = LinkConfig(baudrate=baud, window=window, connect_timeout=connect_timeout)
    if spec.engine_variant:  # a mode that sends activations, batch by batch
        eval_batch_size = _fit_batches(bundle, codec, batch_size, eval_batch_size, config.max_frame)
    log.info(
        "edge %s run %s: %s, %s split %s, engine %s, %s",
        edge_id,
        progress.run_id,
        mode,
        bundle.model,
        bundle.split,
        eng.name if eng else "none",
        data.describe(),
    )
    stop = signals.event
    if resume:
        not_started = f"stopped before reconnecting; continue with --resume --work-dir {work_dir}"
    else:
        not_started = (
            f"stopped before run {progress.run_id} started: nothing was trained or sent; "
            "run the same command again"
        )
    with signals.at_once(not_started):
        link = EdgeLink.connect(
            url,
            key=key,
            bundle_sha256=bundle.manifest_sha256,
            edge_id=edge_id,
            run_id=progress.run_id,
            spool_dir=work_dir / "spool",
            config=config,
            bundle_info=bundle.identity,
        )
    if spec.engine_variant and link.max_message < config.max_frame:
        # The host takes smaller messages than this edge would send: fit to its limit too.
        try:
            eval_batch_size = _fit_batches(
                bundle, codec, batch_size, eval_batch_size, link.max_message
            )
        except UsageFault:
            link.close("stopped")
            raise
    cfg = EdgeRunConfig(
        epochs=epochs,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        codec=codec,
        augment=augment,
        seed=seed,
        work_dir=work_dir,
        mode=mode,
        slowdown=slowdown,
        pacing_clock=pacing_clock(threads),
        activation_noise=activation_noise,
    )
    finished = False
    try:
        with _progress_bars(link) as bars:
            trainer = EdgeTrainer(eng, data, link, cfg, progress, stop=stop, on_batch=bars)
            report = trainer.run()
        if not report["stopped_early"]:
            # A stopped run leaves what the host has not consumed in the spool for --resume;
            # so does one stopped while a slow (or lost) link carries the last batches.
            finished = signals.wait(lambda: link.flush(timeout=cfg.final_metrics_timeout))
            report["stopped_early"] = not finished
    finally:
        # Only a finished run says "done": after a failure the host keeps the run open for
        # --resume.
        link.close("done" if finished and not stop.is_set() else "stopped")
    report.update(
        model=bundle.model,
        split=bundle.split,
        edge_id=edge_id,
        run_id=progress.run_id,
        data=data.describe(),
    )
    if model_out is not None and eng is not None and spec.scores_exit:
        from edge_runtime.model_out import write_edge_model

        write_edge_model(eng, trainer.progress.extra["model_meta"], report, model_out)
        console.print(f"edge model written to {model_out}")
    if report_path:
        write_report(report_path, report)
    _summary(report)
    if report["stopped_early"]:
        where = f"epoch {progress.epoch} batch {progress.next_index}"
        if report.get("link_down_at_stop"):
            where = f"the last checkpoint ({where}): the host was out of reach"
        resume = f"stopped at {where}; continue with --resume --work-dir {work_dir}"
        if signals.interrupted:
            raise Interrupted(resume)
        # A service stop (SIGTERM, as systemd sends) is a clean end: exit 0.
        console.print(resume)


@cli.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the trained model directory (--model-out of a run)",
)
@click.option(
    "--connect", "url", default=None, help="the inference host: socket://HOST:PORT, a device"
)
@click.option("--data", "data_spec", required=True, help=DATA_SPEC_HELP)
@click.option(
    "--threshold", type=float, default=None, help="exit confidence to answer at the edge [0.9]"
)
@click.option(
    "--target-accuracy", type=float, default=None, help="calibrate the threshold to this accuracy"
)
@click.option(
    "--max-offload", type=float, default=None, help="calibrate: offload at most this fraction"
)
@click.option(
    "--calibration-samples",
    type=int,
    default=None,
    help="with --target-accuracy/--max-offload: held-out samples to calibrate on, not answered "
    "[half the held-out split, at most 1000]",
)
@click.option(
    "--latency-budget", type=float, default=None, help="ms: answer at the edge past it (adaptive)"
)
@click.option(
    "--rate",
    type=float,
    default=None,
    help="samples/s arriving, evenly spaced (open loop) [default: the next when the board is free]",
)
@click.option(
    "--burst",
    default=None,
    metavar="FACTOR:START:COUNT",
    help="with --rate: samples START..START+COUNT-1 arrive FACTOR times faster",
)
@click.option(
    "--slowdown",
    type=click.FloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="board profile: pace each edge.onnx run to this many times its compute time here",
)
@click.option("--codec", type=click.Choice(list(CODECS)), default="fp32", show_default=True)
@click.option(
    "--key-file", type=click.Path(path_type=Path), default=None, help="[default: DIR/link.key]"
)
@edge_id_option
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option(
    "--answer-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="seconds without an answer while the host owes one: then the board answers alone",
)
@click.option(
    "--limit", type=int, default=None, help="answer only the first N samples of the held-out split"
)
@baud_option
@report_option()
def infer(
    model_dir: Path,
    url: str | None,
    data_spec: str,
    threshold: float | None,
    target_accuracy: float | None,
    max_offload: float | None,
    calibration_samples: int | None,
    latency_budget: float | None,
    rate: float | None,
    burst: str | None,
    slowdown: float,
    codec: str,
    key_file: Path | None,
    edge_id: str | None,
    connect_timeout: float,
    answer_timeout: float,
    limit: int | None,
    baud: int,
    report_path: Path | None,
) -> None:
    """Hierarchical inference: answer confident samples at the exit, offload the rest."""
    from edge_runtime.engines.ort_import import inference_runtime
    from edge_runtime.infer.arrivals import Arrivals, parse_burst
    from edge_runtime.infer.command import PolicyOptions, run_infer

    # A Ctrl-C inside `import onnxruntime` fails it as "ImportError: initialization failed":
    # signals wait until it is done; from then on Ctrl-C interrupts at once (exit 130).
    signals = StopSignals(say=console.print)
    try:
        inference_runtime()
    finally:
        signals.restore()
    signals.check("stopped before answering anything")

    factor, start, count = parse_burst(burst) if burst is not None else (1.0, 0, 0)
    run_infer(
        model_dir,
        url,
        data_spec,
        policy_options=PolicyOptions(
            threshold=threshold,
            target_accuracy=target_accuracy,
            max_offload=max_offload,
            latency_budget_ms=latency_budget,
            calibration_samples=calibration_samples,
        ),
        arrivals=Arrivals(rate, factor, start, count),
        slowdown=slowdown,
        codec=codec,
        key_file=key_file,
        edge_id=edge_id or socket.gethostname(),
        connect_timeout=connect_timeout,
        answer_timeout=answer_timeout,
        baud=baud,
        limit=limit,
        report_path=report_path,
        say=console.print,
    )


@cli.command()
@click.option(
    "--link",
    "url",
    required=True,
    help="where the host deploys from: /dev/ttyAMA0, socket://HOST:PORT, rfc2217://HOST:PORT",
)
@click.option(
    "--dir",
    "root",
    required=True,
    type=click.Path(path_type=Path),
    help="releases/ and current/ go here; train with --bundle DIR/current/edge",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    required=True,
    help="the board's deploy key (the board file's [connection] key_file on the host)",
)
@edge_id_option
@baud_option
@click.option("--once", is_flag=True, help="exit after one deploy session (0: it succeeded)")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=1.0),
    default=120.0,
    show_default=True,
    help="seconds without a message from the host before a session is given up",
)
@logging_options
def agent(
    url: str,
    root: Path,
    key_file: Path,
    edge_id: str | None,
    baud: int,
    once: bool,
    idle_timeout: float,
) -> None:
    """Wait for `hostctl deploy` over a serial line (or TCP) and install what it sends."""
    key = read_key_file(key_file)
    result = run_agent(
        root,
        check_url(url),
        key,
        edge_id or socket.gethostname(),
        # A HELLO is a few bytes: retry often, so a host that starts later finds us soon.
        LinkConfig(baudrate=baud, handshake_timeout=5.0, backoff_max=2.0),
        once=once,
        idle_timeout=idle_timeout,
        log=lambda line: log.info("agent: %s", line),
    )
    if once and not result.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="check this bundle (DIR/edge)",
)
@click.option("--connect", "url", default=None, help="check the host here (needs --bundle)")
@click.option("--key-file", type=click.Path(path_type=Path), default=None)
@click.option("--timeout", type=click.FloatRange(min=0.5), default=10.0, show_default=True)
@edge_id_option
def doctor(
    bundle_dir: Path | None,
    url: str | None,
    key_file: Path | None,
    timeout: float,
    edge_id: str | None,
) -> None:
    """What this board has and whether it can train: engines, serial ports, bundle, host."""
    from edge_runtime.doctor import checks

    if url is not None and bundle_dir is None:
        raise UsageFault("--connect needs --bundle: the handshake proves the bundle and key")
    if url is not None:
        check_url(url)  # a URL that cannot work is a usage error, as on `run`
    found = checks(bundle_dir, url, key_file, edge_id or socket.gethostname(), timeout)
    for c in found:
        mark = "ok " if c.ok else ("-- " if not c.required else "FAIL")
        click.echo(f"{mark:4} {c.name}: {c.detail}")
    failed = [c.name for c in found if c.required and not c.ok]
    if failed:
        raise HiertrainError(f"doctor: {', '.join(failed)} failed")


def _activation_noise(
    dp_clip: float | None, dp_noise: float | None, mode: str
) -> ActivationNoise | None:
    """--dp-clip / --dp-noise as the defence the loop applies, or a usage error."""
    if dp_clip is None and dp_noise is None:
        return None
    if dp_clip is None:
        raise UsageFault("--dp-noise needs --dp-clip: the noise's std is DP_NOISE x DP_CLIP")
    if not mode_spec(mode).takes_privacy_defences:
        raise UsageFault(f"--dp-clip/--dp-noise apply to --mode {_defended()} only, not {mode}")
    for flag, check, value in (
        ("--dp-clip", check_clip, dp_clip),
        ("--dp-noise", check_noise_multiplier, 0.0 if dp_noise is None else dp_noise),
    ):
        try:
            check(value)
        except PrivacyOptionError as exc:
            raise UsageFault(f"{flag}: {exc}") from None
    return ActivationNoise(dp_clip, 0.0 if dp_noise is None else dp_noise)


def _defended() -> str:
    """The modes that take the activation defences, for messages."""
    return "/".join(n for n, spec in MODES.items() if spec.takes_privacy_defences)


def _check_adversarial_exit(adv_lambda: float | None, engine: str, mode: str) -> None:
    """--adv-lambda: >= 0, hierarchical mode, and an engine that can train it (torch)."""
    if adv_lambda is None:
        return
    from edge_runtime.privacy import check_lambda

    try:
        check_lambda(adv_lambda)
    except ValueError as exc:
        raise UsageFault(f"--adv-lambda: {exc}") from None
    if not mode_spec(mode).takes_privacy_defences:
        raise UsageFault(f"--adv-lambda applies to --mode {_defended()} only, not {mode}")
    if engine == "ort":
        raise UsageFault(
            "--adv-lambda needs --engine torch: the ort engine's training graph is fixed at "
            "export with the exit's loss alone (docs/privacy.md)"
        )


def run_argv(program: list[str], **options: object) -> list[str]:
    """The argv of `edge-runtime run`, options by parameter name (`edge_id="b0"` gives
    `--edge-id b0`, in the order given): True gives a bare flag, None and False leave it out.

    The one place other tools (demo, HIL, the systemd unit) build this command; a name that is
    not an option of `run` raises ValueError, so they cannot drift from it.
    """
    return _command_argv(run, program, options)


def infer_argv(program: list[str], **options: object) -> list[str]:
    """The argv of `edge-runtime infer`, built as `run_argv` builds `run`'s."""
    return _command_argv(infer, program, options)


def _command_argv(command: click.Command, program: list[str], options: dict) -> list[str]:
    params = {p.name: p for p in command.params}
    argv = [*program, command.name]
    for name, value in options.items():
        if name not in params:
            raise ValueError(f"edge-runtime {command.name} has no option for {name!r}")
        if value is None or value is False:
            continue
        flag = params[name].opts[0]
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _fit_batches(bundle, codec: str, batch_size: int, eval_batch_size: int, max_frame: int) -> int:
    """The evaluation batch size to use: --eval-batch-size, or fewer samples where that many
    activations would not fit in one link message. A training batch that does not fit is a
    usage error now, not after an epoch of training."""
    from edge_runtime.train.messages import samples_per_message

    shape = tuple(bundle.manifest["activation"]["shape"])
    fit = samples_per_message(shape, codec, max_frame)
    if batch_size > fit:
        mib = batch_size * math.prod(shape) * BY_NAME[codec].wire.itemsize / 2**20
        raise UsageFault(
            f"--batch-size {batch_size}: a batch's activations ({batch_size} x "
            f"{'x'.join(map(str, shape))}, {mib:.1f} MiB at {codec}) exceed the link's largest "
            f"message ({max_frame / 2**20:g} MiB); use --batch-size {fit} or less, or "
            "a cut with a smaller activation"
        )
    if eval_batch_size > fit:
        log.info(
            "evaluating %d samples a batch, not %d: %d activations of %s fill the link's "
            "largest message",
            fit,
            eval_batch_size,
            fit,
            "x".join(map(str, shape)),
        )
        return fit
    return eval_batch_size


def _run_alone(
    bundle,
    data,
    epochs: int,
    batch_size: int,
    seed: int,
    augment: bool,
    threads: int | None,
    report_path: Path | None,
    slowdown: float,
    signals: StopSignals,
) -> None:
    """A mode without a link (edge-only): the board trains the whole network alone."""
    from edge_runtime.modes.edge import EdgeAlone

    alone = EdgeAlone(bundle, threads=threads, slowdown=slowdown)  # imports torch: deferred
    # It keeps no checkpoint to resume from: a signal ends it at once, with nothing saved.
    with signals.at_once("stopped: edge-only training keeps no checkpoint; run it again"):
        report = alone.run(
            data,
            epochs,
            batch_size,
            seed,
            augment,
            on_epoch=lambda e, tr, te: console.print(
                f"epoch {e}: train {100 * tr:.1f}%, test {100 * (te or 0):.1f}%"
            ),
        )
    if report_path:
        write_report(report_path, report)
    acc = report["final_accuracy"]
    console.print(f"edge-only done: accuracy {100 * (acc or 0):.1f}%, {report['runtime_s']:.1f} s")


class _progress_bars:  # noqa: N801 - used as a context manager and a callback
    """Rich progress on a terminal; timestamped progress lines (logging) everywhere else.

    Accuracy is the running share of samples the exit got right in this phase and epoch, in
    percent, so the last figure of an evaluation is the exit accuracy the report gives.
    """

    def __init__(self, link: EdgeLink | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f} exit acc {task.fields[acc]:.1f}%"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._tasks: dict[tuple[str, int], int] = {}
        self._sums: dict[tuple[str, int], list[float]] = {}  # key -> [sum of acc, batches]
        self._link = link
        self._throttle = Throttle()
        self._rate_mark = (time.monotonic(), 0)

    def __enter__(self) -> _progress_bars:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def __call__(
        self, phase: str, epoch: int, done: int, total: int, loss: float, acc: float
    ) -> None:
        key = (phase, epoch)
        sums = self._sums.setdefault(key, [0.0, 0])
        sums[0] += acc
        sums[1] += 1
        running = 100.0 * sums[0] / sums[1]
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(
                f"epoch {epoch} {phase}", total=total, loss=0.0, acc=0.0
            )
        self._progress.update(self._tasks[key], completed=done, loss=loss, acc=running)
        if self._throttle.due(force=done == total):
            log.info(
                "epoch %d %s batch %d/%d: loss %.3f, exit acc %.1f%%%s",
                epoch,
                phase,
                done,
                total,
                loss,
                running,
                self._link_figures(),
                extra={PROGRESS: True},
            )

    def _link_figures(self) -> str:
        """', link 12.3 kB/s up, backlog 4': the uplink's rate since the last line."""
        if self._link is None:
            return ""
        stats = self._link.stats
        now, sent = time.monotonic(), stats["bytes_up"]
        then, before = self._rate_mark
        self._rate_mark = (now, sent)
        rate = (sent - before) / max(now - then, 1e-6)
        return f", link {rate / 1e3:.1f} kB/s up, backlog {self._link.pending}"


def _summary(report: dict) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    console.print(
        f"edge done: {report['batches_sent']} batches sent, {report['bytes_up'] / 1e6:.2f} MB up, "
        f"exit accuracy {pct(report['edge_exit_accuracy'])}, final accuracy "
        f"{pct(report['final_accuracy'])}, {report['runtime_s']:.1f} s"
    )


def main() -> None:
    """Entry point: typed errors become one line and an exit code, never a traceback."""
    run_cli(cli)


if __name__ == "__main__":
    main()
