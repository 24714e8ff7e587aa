"""The local session runner: the whole system on one machine over an emulated slow link.

Export the model (or take a bundle), start the cloud trainer, put an emulated link (3G-like by
default; kernel shaping as root, else a user-space token bucket, or a paced pty pair for a serial
link: see host/session/links.py) between it and an edge runtime started as a separate process,
train, and print one merged report. `hostctl demo` runs it with `SessionOptions`' defaults (the
embedded synthetic data: nothing to download); `hostctl bench`, the HIL suite and the benchmarks
run it with their own.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.bundle import check_data_fits, load_bundle
from edge_runtime.cli import run_argv
from edge_runtime.command_line import own_module_argv
from edge_runtime.data import load_dataset
from edge_runtime.errors import EXIT_INTERRUPTED, HiertrainError, Interrupted, UsageFault
from edge_runtime.modes import mode_spec
from edge_runtime.report import RunReport, write_report
from host.cloud.serve import fan_out, log_events
from host.cloud.server import CloudServer
from host.export import ExportOptions, export_bundle
from host.linkemu import parse_link
from host.report.curves import CurveWriter
from host.session.links import USER_SPACE, Emulation, make_emulation

EDGE_STOP_S = 60.0  # how long an interrupted edge may take to checkpoint and report


class EdgeRunFailed(HiertrainError, RuntimeError):
    """The edge runtime's process failed, or stopped before the run's end; hostctl exits 1."""


@dataclass
class SessionOptions:
    """One session's options. The defaults are the demo's: about a minute on a 2-core machine."""

    model: str = "smallcnn"
    split: int = 3
    lr: float = 3e-3
    lr_schedule: str = "constant"  # the exported bundle's (edge_runtime/train/schedule.py)
    data: str = "synthetic:6000"
    # 3 epochs of int8+z: both exits near 90% and the early exit answers ~45% of the test
    # samples at confidence 0.9 in about 70 s here (2 epochs of int8: ~62%, ~17%; docs/results.md)
    epochs: int = 3
    batch_size: int = 32
    codec: str = "int8+z"
    link: str = "3g"
    engine: str = "auto"
    work_dir: Path = Path("runs/demo")
    report: Path | None = None
    edge_log: Path | None = None  # the edge's output goes here instead of the terminal
    mode: str = "hierarchical"
    bundle: Path | None = None  # reuse this bundle instead of exporting one
    slowdown: float = 1.0  # board speed profile: the edge computes this many times slower
    # The edge engine's threads (None: all cores). 1 paces the board by the step's CPU time,
    # which load on this machine does not stretch (edge_runtime/train/pacing.py).
    edge_threads: int | None = None
    link_emulation: str = "auto"  # auto | kernel | user (see host/session/links.py)
    model_out: Path | None = None  # write the trained model here (host/model)
    infer: bool = False  # after training, hierarchical inference with the trained model
    resume: bool = False  # continue the interrupted run in work_dir


def run_session(opts: SessionOptions, console: Console) -> dict[str, Any]:
    """Run one session; returns the merged report (also written to work_dir/report.json)."""
    link = parse_link(opts.link)
    # Chosen before anything runs, so an unavailable emulation fails fast (ValueError).
    spec = mode_spec(opts.mode)
    emulation = make_emulation(link, opts.link_emulation) if spec.needs_link else None
    work = opts.work_dir
    if opts.resume and not (work / "edge-work").is_dir():
        raise UsageFault(f"--resume: {work} holds no demo run to resume")
    # The data is on this machine too: the session's own model is exported for its shape and
    # classes, and a bundle it does not fit is a usage error before anything starts.
    data = load_dataset(opts.data, seed=0)
    work.mkdir(parents=True, exist_ok=True)
    console.rule(Text(f"hiertrain demo: {opts.mode}", style="bold"))
    if opts.bundle is None and not (opts.resume and (work / "bundle").is_dir()):
        with console.status("exporting the model"):
            export_bundle(
                ExportOptions(
                    model=opts.model,
                    split=opts.split,
                    lr=opts.lr,
                    lr_schedule=opts.lr_schedule,
                    input_shape=data.input_shape,
                    num_classes=max(data.num_classes, 2),
                    baselines=spec.needs_baselines,
                    force=True,  # the work directory's own bundle, re-made on each run
                ),
                work / "bundle",
            )
    bundle_dir = opts.bundle or work / "bundle"
    bundle = load_bundle(bundle_dir)
    check_data_fits(data, bundle.manifest)
    m = bundle.manifest
    console.print(
        f"{m['model']} split {m['split']}: edge {', '.join(m['edge_blocks'])}; "
        f"activation {'x'.join(map(str, m['activation']['shape']))} per sample"
    )
    edge_report = work / "edge.json"
    edge_options: dict[str, Any] = dict(
        bundle_dir=bundle_dir / "edge",
        mode=opts.mode,
        data_spec=opts.data,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        codec=opts.codec,
        engine=opts.engine,
        edge_id="demo-edge",
        work_dir=work / "edge-work",
        fresh=not opts.resume,
        resume=opts.resume,
        report_path=edge_report,
        slowdown=opts.slowdown,
        threads=opts.edge_threads,
    )
    program = own_module_argv("edge_runtime.launch")
    if emulation is None:  # a mode without a link: no cloud, the board alone
        rc, wall = _run_edge(None, run_argv(program, **edge_options), opts.edge_log)
        if rc != 0:
            raise EdgeRunFailed(
                f"the edge runtime exited with {rc}; see {opts.edge_log or 'above'}"
            )
        report = merge_reports(json.loads(edge_report.read_text()), None, None, "none", wall)
    else:
        curves = CurveWriter(work)  # `hostctl report WORK_DIR` draws them
        cloud = CloudServer(
            bundle,
            work / "cloud-state",
            key=bundle.key(),
            mode=opts.mode,
            metrics_csv=work / "cloud-metrics.csv",
            on_event=fan_out(_epoch_lines(), curves),
            config=emulation.link_config(),
            collect_model=opts.model_out is not None or opts.infer,  # see model_dir below
        )
        try:
            emulation.open(cloud)
            console.print(f"edge link {link.describe()}; {emulation.describe()}")
            cmd = run_argv(program, **edge_options, **emulation.edge_options())
            rc, wall = _run_edge(emulation, cmd, opts.edge_log)
            # An edge interrupted before it trained (while connecting) writes no report.
            reported = rc in (0, EXIT_INTERRUPTED) and edge_report.is_file()
            edge = json.loads(edge_report.read_text()) if reported else {}
            # An edge stopped by a signal exits 0 with a partial run, or with no report at all
            # when the signal came before its run started: either way the cloud would wait on.
            stopped = bool(edge.get("stopped_early")) or (rc == 0 and not reported)
            if rc == 0 and not stopped:
                cloud.wait(exit_when_done=True)
        finally:
            try:
                cloud.stop()
                curves.close()
            finally:
                emulation.close()
        if cloud.fatal is not None:
            # The host's own failure (a tail raising in training, a full disk), which the edge
            # ended on: its words, not "the edge runtime exited with 1".
            raise cloud.fatal
        if rc == EXIT_INTERRUPTED and stopped:
            # Ctrl-C: what was trained so far, reported, and how to go on.
            partial = merge_reports(
                edge, cloud.report(link.name), emulation.stats(), link.describe(), wall
            )
            partial["interrupted"] = True
            path = opts.report or work / "report.json"
            write_report(path, partial)
            console.print(report_table(partial))
            raise Interrupted(
                f"partial report in {path}; continue with hostctl demo --resume --work-dir {work}"
            )
        if rc == EXIT_INTERRUPTED:
            raise Interrupted("before the edge had trained anything: nothing to report")
        if rc != 0:
            raise EdgeRunFailed(
                f"the edge runtime exited with {rc}; see {opts.edge_log or 'above'}"
            )
        if stopped:
            raise EdgeRunFailed("the edge runtime was stopped before the run's end (a signal)")
        report = merge_reports(
            edge,
            cloud.report(link.name),
            emulation.stats(),
            link.describe(),
            wall,
            emulation=emulation.describe(),
        )
    write_report(opts.report or work / "report.json", report)
    console.print(report_table(report))
    model_dir = opts.model_out or (work / "model" if opts.infer else None)
    if model_dir is not None and emulation is not None:
        from host.model.collect import held_out_samples, run_models_out

        samples = held_out_samples(opts.data)
        run_models_out(bundle, cloud.states(), model_dir, samples, say=console.print)
        if opts.infer:
            from host.infer.demo import run_infer_demo

            report["inference"] = run_infer_demo(model_dir, opts.data, work, console)
            write_report(opts.report or work / "report.json", report)
    return report


def _run_edge(
    emulation: Emulation | None, cmd: list[str], log_path: Path | None
) -> tuple[int, float]:
    """Run the edge runtime as its own process (where the emulation puts it, e.g. in the edge
    namespace); returns (exit code, wall seconds).

    On Ctrl-C (or SIGTERM, which the command turns into one) the edge gets SIGINT and time to
    stop cleanly: it keeps its checkpoint and spool for --resume and writes its report. A
    second interrupt, or an edge that does not stop, kills it.
    """
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "w")) if log_path is not None else None
        t0 = time.perf_counter()
        start = emulation.start_edge if emulation is not None else subprocess.Popen
        with start(cmd, stdout=log, stderr=log) as proc:
            try:
                rc = proc.wait()
            except KeyboardInterrupt:
                try:
                    proc.send_signal(signal.SIGINT)
                    proc.wait(EDGE_STOP_S)
                except BaseException:
                    proc.kill()
                    raise
                # The edge stopped because we were interrupted: whether it saw the group's
                # Ctrl-C first (130), finished its batch and exited 0, died of the signal
                # before its handler was set (-SIGINT), or failed because the signal broke
                # its start-up (an import interrupted midway fails as an ImportError: exit 1),
                # this run was interrupted; the edge's own line above says what it saw.
                rc = EXIT_INTERRUPTED
            except BaseException:
                proc.kill()
                raise
        return rc, time.perf_counter() - t0


def _epoch_lines():
    """The cloud's epoch and error lines (the edge's own progress shows its batches)."""
    events = log_events()

    def on_event(kind: str, state, info: dict[str, Any]) -> None:
        if kind in ("epoch", "error"):
            events(kind, state, info)

    return on_event


def merge_reports(
    edge: dict,
    cloud: dict | None,
    link: dict | None,
    link_desc: str,
    wall_s: float,
    emulation: str | None = None,
) -> dict:
    """One report with the shared keys, from the edge's, the cloud's and the link's figures.

    ``emulation`` says what emulated the link (default: the user-space relay, or none without
    ``link`` figures).
    """
    busy = {
        "edge_busy_s": edge["edge_busy_s"],
        "link_busy_s": round(link["busy_up_s"] + link["busy_down_s"], 3) if link else 0.0,
        "cloud_busy_s": cloud["cloud_busy_s"] if cloud else 0.0,
    }
    bottleneck = max(busy, key=busy.get)
    early = [r for r in (edge.get("early_exit") or []) if r["threshold"] == 0.9]
    return RunReport(
        mode=edge["mode"],
        role="run",
        model=edge["model"],
        split=edge["split"],
        link=link_desc,
        epochs=edge["epochs"],
        runtime_s=edge["runtime_s"],
        bytes_up=edge["bytes_up"],
        bytes_down=edge["bytes_down"],
        batches_sent=edge["batches_sent"],
        batches_trained_cloud=cloud["batches_trained_cloud"] if cloud else 0,
        edge_exit_accuracy=edge["edge_exit_accuracy"],
        final_accuracy=cloud["final_accuracy"] if cloud else edge["final_accuracy"],
        **busy,
        extra={
            "link_emulation": emulation or (USER_SPACE if link else "none"),
            "codec": edge.get("codec"),
            # The bundle's rate and schedule (both halves follow it); the cloud's where the
            # edge trains nothing (cloud-only mode).
            **{k: _either(edge, cloud, k) for k in ("lr", "lr_schedule")},
            "lr_last_epoch": edge.get("lr_last_epoch"),
            "engine": edge["engine"],
            "data": edge["data"],
            "train_s": training_s(edge, cloud),
            "wall_s": round(wall_s, 3),
            "bottleneck": bottleneck.removesuffix("_busy_s"),
            "pipeline_efficiency": round(edge["runtime_s"] / max(max(busy.values()), 1e-9), 3),
            "early_exit_at_0.9": early[0] if early else None,
            "early_exit": edge.get("early_exit"),
            # The trained front + exit sent at the end (hierarchical), inside bytes_up.
            "model_bytes_up": edge.get("model_bytes_up", 0),
            # Board pacing: how much slower than here, and on which clock (train/pacing.py).
            "edge_slowdown": edge.get("slowdown", 1.0),
            "pacing_clock": edge.get("pacing_clock"),
        },
    ).as_dict()


def _either(edge: dict, cloud: dict | None, key: str) -> Any:
    """The edge report's `key`, or the cloud's where the edge's is missing or None."""
    value = edge.get(key)
    return value if value is not None else (cloud or {}).get(key)


def training_s(edge: dict, cloud: dict | None) -> float | None:
    """Seconds from the edge's start until both sides had trained their last training batch.

    The runtime less the last evaluation and the closing exchange: the figure the paper compares.
    It subtracts wall clocks of both sides, so it is computed where they share one (the demo and
    the bench run the edge on this machine); None when a side did not report its times.
    """
    start = edge.get("started_at")
    ends = [t for t in (edge.get("train_done_at"), (cloud or {}).get("last_trained_at")) if t]
    if start is None or not ends:
        return None
    return round(max(ends) - start, 3)


def _training_part(r: dict) -> str:
    return "" if r.get("train_s") is None else f" (training {r['train_s']:.1f} s)"


def report_table(r: dict) -> Table:
    """The session's closing table."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    t = Table(title="hierarchical training: report", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    ee = r.get("early_exit_at_0.9")
    rows = [
        (
            "model / split",
            f"{r['model']} split {r['split']}, {r['engine']} engine, {r['codec']} activations",
        ),
        ("data", r["data"]),
        ("link", r["link"]),
        ("link emulation", r["link_emulation"]),
        ("runtime", f"{r['runtime_s']:.1f} s for {r['epochs']} epochs{_training_part(r)}"),
        (
            "bytes",
            f"{r['bytes_up'] / 1e6:.2f} MB up, {r['bytes_down'] / 1e3:.1f} kB down (acks and metrics only)",
        ),
        ("batches", f"{r['batches_sent']} sent, {r['batches_trained_cloud']} trained by the cloud"),
        ("edge exit accuracy", pct(r["edge_exit_accuracy"])),
        ("final accuracy", pct(r["final_accuracy"])),
        (
            "busy",
            f"edge {r['edge_busy_s']:.1f} s, link {r['link_busy_s']:.1f} s, cloud {r['cloud_busy_s']:.1f} s (bottleneck: {r['bottleneck']})",
        ),
        (
            "pipeline efficiency",
            f"{r['pipeline_efficiency']:.2f} (runtime / busiest stage; 1.00 is perfect overlap)",
        ),
    ]
    if ee:
        rows.append(
            (
                "early exit (conf >= 0.9)",
                f"{pct(ee['fraction_at_edge'])} answered at the edge, combined accuracy {pct(ee['accuracy'])}",
            )
        )
    for k, v in rows:
        t.add_row(k, v)
    return t
