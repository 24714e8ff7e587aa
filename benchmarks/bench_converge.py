"""Accuracy at convergence: hierarchical training against end-to-end training, same start.

ResNet-18 and VGG-16 (the zoo's, at base width ``--width``; 64 is the paper's) on two data
sets of CIFAR-10's shape, 3x32x32 with 10 classes:

* ``digits``: the real UCI optical digits (``../shared/data/digits.csv.gz``, 1437 train / 360
  test, 8x8 grey), upscaled to 3x32x32 here: each pixel becomes a 4x4 block (nearest
  neighbour, exact) and the grey channel is repeated three times. The data layer's spec has no
  resize for digits; an integer-factor nearest upscale is three lines and keeps the board's
  ``--data`` grammar unchanged.
* ``synthetic``: the embedded data set (``synthetic:N``, 80% train).

Per network and data set, one bundle (``hostctl export``'s code, seed 0, ``--baselines``,
torch engine) gives every column the same initial weights, optimizer (AdamW, ``--lr``), batch
size and batch order:

* ``end-to-end``: the whole network (front + tail, no exit head) trained with backpropagation
  through the cut: the ``edge`` mode's trainer (edge_runtime/train/whole.py).
* ``fp32``, ``fp32+z``, ``int8+z``: hierarchical training, both halves for real in one process
  (as tests/modes/test_modes_inprocess.py): the edge's training loop with the torch engine
  trains front + exit on the exit's loss and sends each activation through the codec over the
  link protocol (framing, handshake, acks) on a socket pair; the cloud server decodes it and
  trains the tail on what it decoded. The test set's activations go up the same way, so the
  final accuracy is the tail's on coded activations, as on the wire.

Every run appends a row (its per-epoch curves) to ``OUT/results.jsonl`` as soon as it ends; a
rerun skips the runs already there with the same parameters. At the end: a table of final
test accuracies and hierarchical minus end-to-end in points, with the target's verdicts
(within 1 point on the digits, both networks), ``OUT/converge.json`` and a PNG of the curves.

    nice -n 10 .venv/bin/python benchmarks/bench_converge.py --out runs/converge \\
        --png docs/results/converge.png

``--split resnet18=6`` cuts elsewhere and ``--columns end-to-end,fp32`` trains a subset (the
table shows "-" for what is not there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from host.bench.rows import ResultRows  # noqa: E402 - after the repo is on the path

FORMAT = "hiertrain-bench-converge/1"
DIGITS = REPO.parent / "shared" / "data" / "digits.csv.gz"
# The splits of bench_paper.py (and docs/results.md's Pi-class runs): VGG-16 10, ResNet-18 8.
SPLITS = {"resnet18": 8, "vgg16": 10}
DATASETS = ("digits", "synthetic")
END_TO_END = "end-to-end"
CODECS = ("fp32", "fp32+z", "int8+z")
COLUMNS = (END_TO_END, *CODECS)
TARGET_POINTS = 1.0  # hierarchical at most this far below end-to-end, on the digits
TARGET_DATASET = "digits"
SHAPE = (3, 32, 32)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Params:
    """What every run of one invocation shares; part of each row's key."""

    epochs: int = 20
    width: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    synthetic: int = 2000  # synthetic samples: 1600 train, 400 test
    limit: int | None = None  # train samples kept (a tiny subset for the smoke test)
    seed: int = 0
    # The bundle's learning-rate schedule (edge_runtime/train/schedule.py), for every column.
    lr_schedule: str = "constant"


def run_key(dataset: str, net: str, split: int, column: str, p: Params) -> dict[str, Any]:
    """The parameters of one run (a rerun with other ones trains again). A constant schedule
    is left out of the key, so that rows from before schedules existed still count."""
    params = asdict(p)
    if params["lr_schedule"] == "constant":
        del params["lr_schedule"]
    return {"dataset": dataset, "net": net, "split": split, "column": column, **params}


def schedule_spec(text: str, epochs: int) -> str:
    """The spec of ``--lr-schedule``, normalised; a cosine without ``epochs=`` spans the run's
    ``--epochs``. ValueError (ScheduleError) naming what is wrong."""
    from edge_runtime.train.schedule import LrSchedule

    name, _, rest = text.strip().partition(":")
    if name.strip().lower() == "cosine" and "epochs=" not in rest:
        rest = ",".join(filter(None, [f"epochs={epochs}", rest.strip()]))
        text = f"cosine:{rest}"
    return LrSchedule.parse(text).spec()


class Results(ResultRows):
    """The JSON Lines file of this benchmark's rows (host/bench/rows.py), resumable."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, FORMAT)


# -- data and bundles -------------------------------------------------------------------------


def upscale(ds: Any, size: int = SHAPE[1], channels: int = SHAPE[0]) -> Any:
    """The Dataset with each image upscaled by an integer factor (nearest neighbour) to
    ``size`` x ``size`` and a single grey channel repeated to ``channels``."""
    from edge_runtime.data import Dataset

    c, h, w = ds.input_shape
    if size % h or size % w or c not in (1, channels):
        raise ValueError(f"cannot upscale {c}x{h}x{w} to {channels}x{size}x{size}")

    def grow(x: np.ndarray) -> np.ndarray:
        x = x.repeat(size // h, axis=2).repeat(size // w, axis=3)
        return np.ascontiguousarray(x.repeat(channels // c, axis=1))

    return Dataset.from_arrays(
        f"{ds.name} upscaled to {channels}x{size}x{size}",
        grow(ds.x_train),
        ds.y_train,
        grow(ds.x_test),
        ds.y_test,
        num_classes=ds.num_classes,
        split=ds.split,
        classes=ds.classes,
    )


def load(dataset: str, p: Params) -> Any:
    """The named data set at 3x32x32."""
    from edge_runtime.data import load_dataset

    if dataset == "digits":
        if not DIGITS.is_file():
            raise SystemExit(f"{DIGITS} is absent: the digits need ../shared/data/digits.csv.gz")
        return upscale(load_dataset(f"digits:{DIGITS}", seed=p.seed, limit=p.limit))
    return load_dataset(f"synthetic:{p.synthetic}:{SHAPE[1]}", seed=p.seed, limit=p.limit)


def export(net: str, split: int, p: Params, out: Path) -> Path:
    """The network's bundle (torch engine, whole-network weights too), exported once per OUT."""
    from host.export import ExportOptions, export_bundle

    sched = "" if p.lr_schedule == "constant" else "-" + p.lr_schedule.replace(":", "-")
    bundle = out / "bundles" / f"{net}-w{p.width}-split{split}-lr{p.lr:g}{sched}-seed{p.seed}"
    if not (bundle / "manifest.json").is_file():
        export_bundle(
            ExportOptions(
                model=net,
                split=split,
                input_shape=SHAPE,
                num_classes=NUM_CLASSES,
                lr=p.lr,
                lr_schedule=p.lr_schedule,
                seed=p.seed,
                baselines=True,  # the end-to-end column trains the whole network from these
                engine="torch",
                model_kwargs={"width": p.width},
                validate=False,  # the runs themselves fail loudly on a broken bundle
                force=True,
            ),
            bundle,
        )
    return bundle


# -- the two kinds of run ---------------------------------------------------------------------


def end_to_end(bundle_dir: Path, data: Any, p: Params) -> dict[str, Any]:
    """The whole network from the bundle's initial weights; per-epoch test accuracy."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.modes.edge import EdgeAlone

    curve: list[float | None] = []
    EdgeAlone(load_bundle(bundle_dir / "edge"), threads=1).run(
        data, p.epochs, p.batch_size, seed=p.seed, on_epoch=lambda _e, _t, acc: curve.append(acc)
    )
    return {"test_accuracy": curve}


def hierarchical(bundle_dir: Path, data: Any, codec: str, p: Params, work: Path) -> dict[str, Any]:
    """Both halves of hierarchical training in one process over a socket pair; per-epoch
    final (tail) and exit test accuracy, and the bytes that went up."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import make_engine
    from edge_runtime.link import LinkConfig
    from edge_runtime.train.loop import EdgeRunConfig, EdgeTrainer, RunProgress
    from host.cloud.server import CloudServer

    bundle = load_bundle(bundle_dir)
    edge_bundle = load_bundle(bundle_dir / "edge")
    epochs: list[dict[str, Any]] = []

    def on_event(kind: str, _state: Any, info: dict[str, Any]) -> None:
        if kind == "epoch":
            epochs.append(info)

    config = LinkConfig(read_timeout=0.05)
    server = CloudServer(bundle, work / "host", key=bundle.key(), config=config, on_event=on_event)
    link = server.connect_in_process(edge_bundle, work / "edge" / "spool", run_id="converge")
    cfg = EdgeRunConfig(
        epochs=p.epochs, batch_size=p.batch_size, codec=codec, seed=p.seed, work_dir=work / "edge"
    )
    try:
        engine = make_engine("torch", edge_bundle, threads=1)
        edge = EdgeTrainer(engine, data, link, cfg, RunProgress("converge")).run()
        link.flush(timeout=120)
    finally:
        link.close("done")
    deadline = time.monotonic() + 300  # the host ends the run when it has every message
    while not all(e["done"] for e in server.report()["edges"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()
    report = server.report()
    if report["errors"] or len(epochs) != p.epochs:
        raise RuntimeError(f"{codec}: the host saw {len(epochs)} epochs, errors {report['errors']}")
    epochs.sort(key=lambda e: e["epoch"])
    return {
        "test_accuracy": [e["final_accuracy"] for e in epochs],
        "exit_accuracy": [e["edge_exit_accuracy"] for e in epochs],
        "bytes_up": edge["bytes_up"],
    }


def train(dataset: str, net: str, split: int, column: str, p: Params, out: Path) -> dict[str, Any]:
    """One run, timed; the figures of its row."""
    import torch

    torch.manual_seed(p.seed)  # nothing here should draw from it; pinned all the same
    bundle = export(net, split, p, out)
    data = load(dataset, p)
    wall, cpu = time.perf_counter(), time.process_time()
    if column == END_TO_END:
        figures = end_to_end(bundle, data, p)
    else:
        work = out / "work" / f"{dataset}-{net}-{column}-{int(time.time())}"
        figures = hierarchical(bundle, data, column, p, work)
    curve = figures["test_accuracy"]
    return {
        **figures,
        "final_accuracy": curve[-1],
        "data": data.describe(),
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }


# -- the table, the JSON and the PNG ----------------------------------------------------------


LAST = 5  # epochs the "last" figure averages: one test sample of the digits is 0.28 points
# Late training, for the swing figures: epochs 12-20 of 20 (docs/results.md's first look).
LATE_FROM = 0.55


def _figures(rows: dict[str, dict[str, Any] | None], of: str) -> dict[str, Any]:
    """Each column's accuracy (``final``: the last epoch's; ``last``: the mean of the last
    LAST epochs') and hierarchical minus end-to-end in points."""

    def value(r: dict[str, Any] | None) -> float | None:
        if r is None:
            return None
        curve = r["test_accuracy"]
        return curve[-1] if of == "final" else float(np.mean(curve[-LAST:]))

    acc = {c: value(r) for c, r in rows.items()}
    e2e = acc[END_TO_END]
    diff = {
        c: (round(100 * (acc[c] - e2e), 2) if acc[c] is not None and e2e is not None else None)
        for c in CODECS
    }
    return {"accuracy": acc, "points_vs_end_to_end": diff}


def late_swing(curve: list[float]) -> dict[str, float]:
    """Late training (epochs from LATE_FROM of the run on): the lowest test accuracy and the
    largest one-epoch drop, in points."""
    start = int(len(curve) * LATE_FROM)
    late = curve[start:]
    drops = [curve[i - 1] - curve[i] for i in range(max(start, 1), len(curve))]
    return {
        "from_epoch": start + 1,  # 1-based, as the tables count epochs
        "lowest": round(100 * min(late), 2),
        "largest_drop": round(100 * max(drops, default=0.0), 2),
    }


def summary(
    datasets: list[str], nets: dict[str, int], params: list[Params], results: Results
) -> list[dict]:
    """One entry per (data set, network cut at its split, lr schedule) with every column's
    figures found so far."""
    out = []
    for dataset in datasets:
        for net, split in nets.items():
            for p in params:
                out.append(_entry(dataset, net, split, p, results))
    return out


def _entry(dataset: str, net: str, split: int, p: Params, results: Results) -> dict[str, Any]:
    """The figures of one (data set, network, split, schedule) found so far."""
    rows = {c: results.find(run_key(dataset, net, split, c, p)) for c in COLUMNS}
    final = _figures(rows, "final")
    fp32, lossless = rows["fp32"], rows["fp32+z"]
    entry: dict[str, Any] = {
        "dataset": dataset,
        "net": net,
        "split": split,
        "lr_schedule": p.lr_schedule,
        "late_swing": {c: late_swing(r["test_accuracy"]) for c, r in rows.items() if r},
        "final_accuracy": final["accuracy"],
        "points_vs_end_to_end": final["points_vs_end_to_end"],
        f"last{LAST}": _figures(rows, "last"),
        # Lossless on the wire: the same tensors reach the tail, so the same curve.
        "lossless_curve_equals_fp32": (
            fp32["test_accuracy"] == lossless["test_accuracy"] if fp32 and lossless else None
        ),
        "bytes_up_over_fp32": {
            c: round(rows[c]["bytes_up"] / fp32["bytes_up"], 3) for c in CODECS if fp32 and rows[c]
        },
        "curves": {c: r for c, r in rows.items() if r},
    }
    if dataset == TARGET_DATASET:
        known = [d for d in entry["points_vs_end_to_end"].values() if d is not None]
        entry["target_met"] = (
            all(d >= -TARGET_POINTS for d in known) if len(known) == len(CODECS) else None
        )
    return entry


def markdown(entries: list[dict[str, Any]], p: Params, of: str = "final") -> str:
    """A table of test accuracy per column (``final``: the last epoch's, with the target's
    verdicts; ``last``: the mean of the last LAST epochs') and hierarchical minus end-to-end,
    a row per (data set, network, lr schedule)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def pts(v: float | None) -> str:
        return "-" if v is None else f"{v:+.1f}"

    final = of == "final"
    lines = [
        f"| data | network (width {p.width}) | lr schedule | end-to-end | fp32 | fp32+z | int8+z "
        "| fp32 - e2e | fp32+z - e2e | int8+z - e2e |" + (" target (>= -1 pt) |" if final else ""),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if final else ""),
    ]
    for e in entries:
        figures = (
            {"accuracy": e["final_accuracy"], "points_vs_end_to_end": e["points_vs_end_to_end"]}
            if final
            else e[f"last{LAST}"]
        )
        verdict = ""
        if final:
            verdict = {True: " met |", False: " **missed** |", None: " - |"}[e.get("target_met")]
            if e["dataset"] != TARGET_DATASET:
                verdict = " (no target) |"
        f, d = figures["accuracy"], figures["points_vs_end_to_end"]
        lines.append(
            f"| {e['dataset']} | {e['net']} split {e['split']} | {e['lr_schedule']} | "
            + " | ".join(pct(f[c]) for c in COLUMNS)
            + " | "
            + " | ".join(pts(d[c]) for c in CODECS)
            + " |"
            + verdict
        )
    return "\n".join(lines)


def swing_markdown(entries: list[dict[str, Any]], p: Params) -> str:
    """Late training's lowest test accuracy and largest one-epoch drop per column (%, points)."""
    present = [c for c in COLUMNS if any(c in e["late_swing"] for e in entries)]
    frm = next((s["from_epoch"] for e in entries for s in e["late_swing"].values()), "-")
    lines = [
        f"| data | network (width {p.width}) | lr schedule | "
        + " | ".join(f"{c}: lowest / largest drop, epochs {frm}-{p.epochs}" for c in present)
        + " |",
        "|---|---|---|" + "---:|" * len(present),
    ]
    for e in entries:
        cells = []
        for c in present:
            s = e["late_swing"].get(c)
            cells.append("-" if s is None else f"{s['lowest']:.1f} / {s['largest_drop']:.1f}")
        lines.append(
            f"| {e['dataset']} | {e['net']} split {e['split']} | {e['lr_schedule']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def plot(entries: list[dict[str, Any]], p: Params, path: Path) -> None:
    """Test accuracy against epoch, one panel per (data set, network); each lr schedule its
    own line style (a constant rate thin and dashed), the exit's curve when there is one."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; a file is what we want
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = sorted({e["net"] for e in entries})
    rows = sorted({e["dataset"] for e in entries})
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(5.5 * len(cols), 4 * len(rows)), squeeze=False
    )
    style = {
        END_TO_END: ("black", "-", 2.0),
        "fp32": ("tab:blue", "-", 1.5),
        "fp32+z": ("tab:cyan", "--", 1.5),
        "int8+z": ("tab:red", "-", 1.2),
    }
    schedules = sorted({e["lr_schedule"] for e in entries}, key=lambda s: s != "constant")
    several = len(schedules) > 1
    for e in entries:
        ax = axes[rows.index(e["dataset"])][cols.index(e["net"])]
        constant = several and e["lr_schedule"] == "constant"
        suffix = f", lr {e['lr_schedule']}" if several else ""
        for column, row in e["curves"].items():
            color, ls, lw = style[column]
            if constant:  # the reference: thin, dashed, faded
                ls, lw = "--", 0.9
            acc = [100 * a for a in row["test_accuracy"]]
            ax.plot(
                range(1, len(acc) + 1),
                acc,
                color=color,
                ls=ls,
                lw=lw,
                alpha=0.55 if constant else 1.0,
                marker="" if constant else ".",
                label=column + suffix,
            )
        fp32 = e["curves"].get("fp32")
        if fp32 and not several:
            exit_acc = [100 * a for a in fp32["exit_accuracy"]]
            ax.plot(
                range(1, len(exit_acc) + 1), exit_acc, color="tab:gray", ls=":", label="exit (fp32)"
            )
        sched = "" if several or e["lr_schedule"] == "constant" else f", lr {e['lr_schedule']}"
        ax.set_title(f"{e['dataset']}: {e['net']} (width {p.width}) split {e['split']}{sched}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Params()
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Runs are kept in OUT/results.jsonl; a rerun skips those trained with the same "
        "parameters.",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/converge"), help="[runs/converge]")
    ap.add_argument("--png", type=Path, default=None, help="the curves [OUT/converge.png]")
    ap.add_argument("--nets", default=",".join(SPLITS), help=f"[{','.join(SPLITS)}]")
    ap.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="NET=N",
        help="cut NET at block N instead ["
        + ", ".join(f"{n}={k}" for n, k in SPLITS.items())
        + "]",
    )
    ap.add_argument(
        "--columns", default=",".join(COLUMNS), help=f"what to train [{','.join(COLUMNS)}]"
    )
    ap.add_argument("--data", default=",".join(DATASETS), help=f"[{','.join(DATASETS)}]")
    ap.add_argument("--epochs", type=int, default=d.epochs, help=f"[{d.epochs}]")
    ap.add_argument("--width", type=int, default=d.width, help=f"base channels [{d.width}]")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help=f"[{d.batch_size}]")
    ap.add_argument("--lr", type=float, default=d.lr, help=f"AdamW [{d.lr:g}]")
    ap.add_argument(
        "--lr-schedule",
        action="append",
        default=[],
        metavar="SPEC",
        help="the bundle's lr schedule, both halves and end-to-end alike (hostctl export's "
        "--lr-schedule; a bare 'cosine' spans --epochs); repeat it to train and table several "
        f"side by side [{d.lr_schedule}]",
    )
    ap.add_argument(
        "--synthetic", type=int, default=d.synthetic, help=f"synthetic samples [{d.synthetic}]"
    )
    ap.add_argument("--limit", type=int, default=None, help="train samples kept [all]")
    ap.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"initial weights, batch order, the synthetic images [{d.seed}]",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (the sizing assumes 1) [1]"
    )
    return ap.parse_args(argv)


def _choose(text: str, valid: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise SystemExit(
            f"error: unknown {what} {', '.join(bad) or '(none)'}: valid are {', '.join(valid)}"
        )
    return names


def _splits(given: list[str], nets: dict[str, int]) -> dict[str, int]:
    """--split NET=N for networks being run, each N a valid cut of NET."""
    from models import build_model  # torch; only when a split is given

    out = {}
    for text in given:
        net, _, n = text.partition("=")
        if net not in nets or not n.isdigit():
            raise SystemExit(f"error: --split takes NET=N with NET one of {', '.join(nets)}")
        valid = build_model(net, SHAPE, NUM_CLASSES, width=4).valid_splits
        if int(n) not in valid:
            raise SystemExit(f"error: --split {net}={n}: valid are {valid.start}..{valid.stop - 1}")
        out[net] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    """Train what is not in the results yet, then print the table; 2 on a usage error."""
    try:
        args = parse_args(argv)
        nets = {n: SPLITS[n] for n in _choose(args.nets, list(SPLITS), "network")}
        nets.update(_splits(args.split, nets))
        columns = _choose(args.columns, COLUMNS, "column")
        datasets = _choose(args.data, DATASETS, "data set")
        if min(args.epochs, args.width, args.batch_size, args.synthetic, args.threads) < 1:
            raise SystemExit(
                "error: --epochs, --width, --batch-size, --synthetic and --threads must be >= 1"
            )
        if args.limit is not None and args.limit < 1:
            raise SystemExit("error: --limit must be >= 1")
        if args.seed < 0:
            raise SystemExit("error: --seed must be >= 0")
        from edge_runtime.train.schedule import ScheduleError

        try:
            schedules = [schedule_spec(s, args.epochs) for s in args.lr_schedule or ["constant"]]
        except ScheduleError as exc:
            raise SystemExit(f"error: --lr-schedule: {exc}") from None
        schedules = list(dict.fromkeys(schedules))  # the same one twice: trained once
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        return int(exc.code or 0)
    import torch

    torch.set_num_threads(args.threads)
    base = Params(
        epochs=args.epochs,
        width=args.width,
        batch_size=args.batch_size,
        lr=args.lr,
        synthetic=args.synthetic,
        limit=args.limit,
        seed=args.seed,
    )
    params = [replace(base, lr_schedule=s) for s in schedules]
    results = Results(args.out / "results.jsonl")
    for dataset in datasets:
        for net, split in nets.items():
            for p in params:
                for column in columns:
                    what = f"{dataset} {net} {column} (lr {p.lr_schedule})"
                    key = run_key(dataset, net, split, column, p)
                    if results.find(key) is not None:
                        print(f"{what}: already in {results.path}", flush=True)
                        continue
                    print(f"{what}: training {p.epochs} epochs ...", flush=True)
                    try:
                        figures = train(dataset, net, split, column, p, args.out)
                    except (RuntimeError, OSError, ValueError) as exc:  # a failed run: say which
                        print(f"error: {what}: {exc}", file=sys.stderr)
                        return 1
                    row = results.add(key, figures)
                    print(
                        f"{what}: final {100 * row['final_accuracy']:.2f}% "
                        f"({row['wall_s']} s wall, {row['cpu_s']} s CPU)",
                        flush=True,
                    )
    entries = summary(datasets, nets, params, results)
    table = "\n\n".join(
        [
            "Final test accuracy (%), the last epoch's:",
            markdown(entries, base),
            f"Mean test accuracy (%) of the last {LAST} epochs:",
            markdown(entries, base, of="last"),
            "Late training: lowest test accuracy (%) and largest one-epoch drop (points):",
            swing_markdown(entries, base),
        ]
    )
    png = args.png or args.out / "converge.png"
    plot(entries, base, png)
    out_json = args.out / "converge.json"
    out_json.write_text(
        json.dumps(
            {
                "format": FORMAT,
                "params": asdict(base),
                "lr_schedules": schedules,
                "entries": entries,
            },
            indent=2,
        )
        + "\n"
    )
    print("\n" + table)
    for e in entries:
        print(
            f"{e['dataset']} {e['net']} (lr {e['lr_schedule']}): fp32+z curve identical to "
            f"fp32's: {e['lossless_curve_equals_fp32']}; bytes up over fp32: "
            f"{e['bytes_up_over_fp32']}"
        )
        if e["dataset"] == TARGET_DATASET:
            print(
                f"target {e['net']}: hierarchical within {TARGET_POINTS:g} point of "
                f"end-to-end on the digits (lr {e['lr_schedule']}): {e.get('target_met')}"
            )
    print(f"\nrows: {results.path}\nsummary: {out_json}\ncurves: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
