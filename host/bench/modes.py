"""`hostctl bench`: the training modes side by side, same model, split, data, epochs and link.

Each mode is a full run of the real system (edge runtime as its own process, cloud trainer,
emulated link), one after the other. Runtimes are compared with split learning's, the scheme
the paper improves on, twice: the whole run, and its training phase (until both sides have
trained the last batch; the final evaluation, the same work in every mode, left out), which is
the time the paper compares. Split learning sends fp32 both ways; `--codec` applies to
hierarchical.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.data import load_dataset
from edge_runtime.modes import MODE_NAMES, mode_spec
from edge_runtime.report import write_report
from host.export import ExportOptions, export_bundle
from host.session import SessionOptions, run_session


@dataclass
class BenchOptions:
    """What `hostctl bench` compares."""

    modes: tuple[str, ...] = MODE_NAMES
    model: str = "smallcnn"
    split: int = 3
    link: str = "3g"
    link_emulation: str = "auto"  # auto | kernel | user (see host/session/links.py)
    data: str = "synthetic"
    epochs: int = 1
    batch_size: int = 32
    codecs: tuple[str, ...] = ("fp32",)  # hierarchical runs once per codec
    lr: float = 3e-3
    lr_schedule: str = "constant"  # the bundle's, for every mode (edge_runtime/train/schedule.py)
    slowdown: float = 1.0
    edge_threads: int | None = None  # the edge engine's; 1 paces by CPU time (SessionOptions)
    engine: str = "auto"  # the edge's engine in every mode
    profile_name: str | None = None
    model_out: Path | None = None  # the hierarchical run's trained model (per codec if several)
    input_shape: tuple[int, int, int] | None = None  # None: the data's
    num_classes: int | None = None  # None: the data's (at least 2)
    out: Path = Path("runs/bench")
    extra: dict[str, Any] = field(default_factory=dict)


def run_bench(opts: BenchOptions, console: Console) -> dict[str, Any]:
    """Run every mode; returns the report (also written to out/bench.json, with the figures)."""
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    # The model fits the data unless told otherwise (run_session refuses a misfit, exit 2).
    data = load_dataset(opts.data, seed=0)
    input_shape = opts.input_shape or data.input_shape
    num_classes = opts.num_classes or max(data.num_classes, 2)
    with console.status(f"exporting {opts.model} split {opts.split} with the baselines"):
        export_bundle(
            ExportOptions(
                model=opts.model,
                split=opts.split,
                lr=opts.lr,
                lr_schedule=opts.lr_schedule,
                baselines=True,
                input_shape=input_shape,
                num_classes=num_classes,
                force=True,  # bench's own bundle under --out, re-made on each run
            ),
            out / "bundle",
        )
    runs: dict[str, dict[str, Any]] = {}
    quiet = Console(quiet=True)
    # A mode whose codec is its own runs once per --codec; the baselines cross at fp32.
    plan = [
        (f"{m}-{c}" if mode_spec(m).codec_is_free and len(opts.codecs) > 1 else m, m, c)
        for m in opts.modes
        for c in (opts.codecs if mode_spec(m).codec_is_free else ("fp32",))
    ]
    for label, mode, codec in plan:
        console.print(
            Text(label, style="bold"),
            f": running ({opts.epochs} epoch(s), {opts.data}, link {opts.link})",
            sep="",
        )
        runs[label] = run_session(
            SessionOptions(
                model=opts.model,
                split=opts.split,
                lr=opts.lr,
                data=opts.data,
                epochs=opts.epochs,
                batch_size=opts.batch_size,
                codec=codec,
                link=opts.link,
                link_emulation=opts.link_emulation,
                mode=mode,
                work_dir=out / label,
                edge_log=out / f"{label}-edge.log",
                bundle=out / "bundle",
                slowdown=opts.slowdown,
                edge_threads=opts.edge_threads,
                engine=opts.engine,
                model_out=_model_out(opts, label, mode),
            ),
            quiet,
        )
        r = runs[label]
        console.print(
            f"  {r['runtime_s']:.1f} s, final accuracy "
            f"{_pct(r['final_accuracy'])}, {r['bytes_up'] / 1e6:.2f} MB up"
        )
    # Every run's time as a ratio of split learning's (the mode that waits for its gradient).
    base = next((runs[m] for m in opts.modes if mode_spec(m).waits_for_gradient), {})
    for r in runs.values():
        for key in ("runtime", "train"):
            ours, theirs = r.get(f"{key}_s"), base.get(f"{key}_s")
            r[f"{key}_vs_split"] = round(ours / theirs, 3) if ours and theirs else None
    report = {
        "model": opts.model,
        "split": opts.split,
        "link": opts.link,
        "data": opts.data,
        "epochs": opts.epochs,
        "batch_size": opts.batch_size,
        "codecs": list(opts.codecs),
        "engine": opts.engine,
        "edge_profile": opts.profile_name
        or (f"slowdown {opts.slowdown}x" if opts.slowdown > 1 else "this machine's speed"),
        "link_emulation": _emulations(runs),
        "modes": runs,
    }
    write_report(out / "bench.json", report)
    try:
        report["figures"] = [str(p) for p in figures(report, out)]
    except ImportError as exc:  # matplotlib is in the host extra; say so rather than fail
        console.print(f"no figures: {exc}", style="yellow")
    write_report(out / "bench.json", report)
    console.print(bench_table(report))
    _where(console, out, report)
    return report


def _where(console: Console, out: Path, report: dict[str, Any]) -> None:
    """Where every output went, a path a line (never wrapped): a bench is read from its files."""
    lines = [f"report: {out / 'bench.json'}"]
    lines += [f"figure: {fig}" for fig in report.get("figures", [])]
    lines.append(f"bundle: {out / 'bundle'}")
    for label in report["modes"]:
        lines.append(f"{label}: report {out / label / 'report.json'}")
        lines.append(f"{label}: edge log {out / f'{label}-edge.log'}")
        lines.append(f"{label}: curves {out / label / 'tensorboard'}")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)


def _emulations(runs: dict[str, dict[str, Any]]) -> str:
    """What emulated the link, from the runs themselves (edge-only runs use none)."""
    used = dict.fromkeys(r["link_emulation"] for r in runs.values())
    return "; ".join(u for u in used if u != "none") or "none"


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _model_out(opts: BenchOptions, label: str, mode: str) -> Path | None:
    """Where a run's trained model goes: only a mode that trains its exit has one to serve."""
    if opts.model_out is None or not mode_spec(mode).scores_exit:
        return None
    return opts.model_out / label if len(opts.codecs) > 1 else opts.model_out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def bench_table(report: dict[str, Any]) -> Table:
    """The side-by-side table."""
    t = Table(
        title=f"{report['model']} split {report['split']}, link {report['link']}, "
        f"{report['epochs']} epoch(s) of {report['data']}; edge: {report['edge_profile']}",
        caption=f"link emulation: {report['link_emulation']}; training = until both sides "
        "trained the last batch (runtime less the final evaluation)",
    )
    for col in (
        "mode",
        "runtime s",
        "vs split",
        "training s",
        "vs split",
        "MB up",
        "MB down",
        "edge busy s",
        "link busy s",
        "cloud busy s",
        "exit acc",
        "final acc",
    ):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for mode, r in report["modes"].items():
        t.add_row(
            mode,
            f"{r['runtime_s']:.1f}",
            _ratio(r.get("runtime_vs_split")),
            "n/a" if r.get("train_s") is None else f"{r['train_s']:.1f}",
            _ratio(r.get("train_vs_split")),
            f"{r['bytes_up'] / 1e6:.2f}",
            f"{r['bytes_down'] / 1e6:.2f}",
            f"{r['edge_busy_s']:.1f}",
            f"{r['link_busy_s']:.1f}",
            f"{r['cloud_busy_s']:.1f}",
            _pct(r["edge_exit_accuracy"]),
            _pct(r["final_accuracy"]),
        )
    return t


def _intervals(path: Path, busy_key: str) -> list[tuple[float, float]]:
    """(start, end) of each batch's compute from a per-batch metrics CSV (end time, duration)."""
    if not path.is_file():
        return []
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get(busy_key)]
    return [(float(r["time"]) - float(r[busy_key]), float(r["time"])) for r in rows]


def _link_intervals(
    cloud: list[tuple[float, float]], link_busy_s: float
) -> list[tuple[float, float]]:
    """Each batch's transfer, estimated: the link's busy time shared evenly among the batches
    the cloud trained, each drawn ending where the cloud starts on it (the link emulation
    counts bytes, not when each crossed)."""
    if not cloud or not link_busy_s:
        return []
    each = link_busy_s / len(cloud)
    return [(start - each, start) for start, _ in cloud]


def figures(report: dict[str, Any], out: Path) -> list[Path]:
    """timeline.png (each stage's busy intervals per mode) and runtime_accuracy.png (runtime
    and accuracy bars, values printed); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    modes = list(report["modes"])
    stages = (  # (name, colour, row offset within a mode's band)
        ("edge compute", "tab:blue", 0.25),
        ("link transfer (estimated per batch)", "tab:orange", 0.0),
        ("cloud compute", "tab:green", -0.25),
    )
    fig, ax = plt.subplots(figsize=(11, 1.6 + 1.2 * len(modes)))
    for row, mode in enumerate(modes):
        work = out / mode
        r = report["modes"][mode]
        edge = _intervals(work / "edge-work" / "edge_metrics.csv", "step_s")
        cloud = _intervals(work / "cloud-metrics.csv", "busy_s")
        link = _link_intervals(cloud, r["link_busy_s"])
        t0 = min([s for s, _ in edge + cloud + link] or [0.0])
        y = len(modes) - row
        for (_, color, dy), spans in zip(stages, (edge, link, cloud), strict=True):
            ax.broken_barh([(s - t0, e - s) for s, e in spans], (y + dy - 0.1, 0.2), color=color)
        ax.text(r["runtime_s"], y, f" {r['runtime_s']:.1f} s", va="center", fontsize=8)
    ax.set_yticks(range(1, len(modes) + 1), list(reversed(modes)))
    ax.set_xlabel("seconds since the run's first batch")
    ax.legend(
        handles=[Patch(color=c, label=n) for n, c, _ in stages],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25),
        ncol=3,
        fontsize="small",
        frameon=False,
    )
    ax.set_title(f"{report['model']} split {report['split']} over {report['link']}: busy intervals")
    fig.tight_layout()
    timeline = out / "timeline.png"
    fig.savefig(timeline, dpi=110)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    runtimes = [report["modes"][m]["runtime_s"] for m in modes]
    final = [_as_pct(report["modes"][m]["final_accuracy"]) for m in modes]
    exit_ = [_as_pct(report["modes"][m]["edge_exit_accuracy"]) for m in modes]
    xs = list(range(len(modes)))
    a1.bar(xs, runtimes, color="tab:blue")
    a1.set_ylabel("runtime (s)")
    for x, v in zip(xs, runtimes, strict=True):
        a1.text(x, v, f"{v:.1f} s", ha="center", va="bottom", fontsize=8)
    width = 0.38
    for offset, vals, color, label in (
        (-width / 2, final, "tab:green", "final exit"),
        (width / 2, exit_, "tab:orange", "early exit"),
    ):
        bars = [(x + offset, v) for x, v in zip(xs, vals, strict=True) if v is not None]
        if bars:
            a2.bar([b[0] for b in bars], [b[1] for b in bars], width, color=color, label=label)
        for x, v in bars:
            a2.text(x, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=7)
    shown = [v for v in final + exit_ if v is not None]
    if shown:  # zoomed: the spread between modes is a few points, not 0-100
        span = max(max(shown) - min(shown), 1.0)
        a2.set_ylim(max(0.0, min(shown) - span), min(100.0, max(shown) + 0.5 * span))
    a2.set_ylabel("test accuracy (%, axis zoomed)")
    a2.legend(fontsize="small")
    for ax_ in (a1, a2):
        ax_.set_xticks(xs, modes, rotation=25, ha="right")
    fig.suptitle(f"{report['model']} split {report['split']}, link {report['link']}")
    fig.tight_layout()
    bars_png = out / "runtime_accuracy.png"
    fig.savefig(bars_png, dpi=110)
    plt.close(fig)
    return [timeline, bars_png]


def _as_pct(v: float | None) -> float | None:
    return None if v is None else 100 * v
